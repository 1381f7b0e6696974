"""openvino / openvino-bf16: the exported graph compiled by OpenVINO (an optional dependency)."""

from __future__ import annotations

import pytest
import torch

from accelkit.saving import load, save
from accelkit.variants import build_variant, list_variants

openvino = pytest.importorskip("openvino", reason="OpenVINO is optional: pip install openvino")


def test_openvino_gives_the_float_outputs_and_saves(digits_workload, digits_model, tmp_path, monkeypatch):
    monkeypatch.setenv("ACCELKIT_THREADS", "2")
    settings = digits_workload.default_settings(64)
    built = build_variant("openvino", digits_model, settings, digits_workload)
    assert built.form == "openvino" and built.details["streams"] == 2
    data = digits_workload.eval_data(100)  # 64 + 36: uneven slices across the two streams
    out = digits_workload.predict(built.model, data, built.settings)
    torch.testing.assert_close(out, digits_workload.predict(digits_model, data, settings), rtol=1e-4, atol=1e-4)
    loaded = load(save(built, tmp_path / "ov", workload=digits_workload.name))
    torch.testing.assert_close(digits_workload.predict(loaded.model, data, loaded.settings), out)


def test_openvino_is_a_runtime_step_streams_do_not_follow(digits_workload):
    from accelkit.techniques.registry import composition_error

    assert "openvino" in list_variants(digits_workload)
    assert "applies to ort models" in composition_error(["openvino", "parallel-streams"])


def test_openvino_plan_ships_self_contained(tmp_path):
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import model_folders as mf
    from accelkit.workloads import workload_from_model

    wl = workload_from_model(mf.sentence_transformers_folder(tmp_path), mf.text_file(tmp_path, 40))
    built = build_variant("openvino", wl.build_model(), wl.default_settings(), wl)
    path = save(built, tmp_path / "model", workload=wl)
    assert json.loads((path / "plan.json").read_text())["format"] == "hf-onnx"
    texts = list(wl.eval_data(8))
    measured = torch.nn.functional.normalize(wl.predict(built.model, texts, built.settings), dim=1)
    again = torch.from_numpy(load(path).encode(texts))
    assert torch.nn.functional.cosine_similarity(measured, again).min() > 0.9999


def test_openvino_int8_keeps_the_predictions_saves_and_refuses_a_budget_it_breaks(digits_workload, digits_model,
                                                                                   tmp_path, monkeypatch):
    pytest.importorskip("nncf", reason="NNCF is optional: pip install nncf")
    from accelkit.errors import ConfigError

    monkeypatch.setenv("ACCELKIT_THREADS", "2")
    settings = digits_workload.default_settings(64)
    built = build_variant("openvino-int8", digits_model, settings, digits_workload, max_quality_drop=0.02)
    assert built.compute_dtype == "int8" and built.details["calib_quality_drop"] <= 0.02 * 0.4
    data = digits_workload.eval_data(200)
    out = digits_workload.predict(built.model, data, built.settings)
    ref = digits_workload.predict(digits_model, data, settings)
    assert (out.argmax(1) == ref.argmax(1)).float().mean() >= 0.97  # int8 moves few predictions
    loaded = load(save(built, tmp_path / "ov8", workload=digits_workload.name))
    torch.testing.assert_close(digits_workload.predict(loaded.model, data, loaded.settings), out)
    with pytest.raises(ConfigError, match="over the budget"):
        build_variant("openvino-int8", digits_model, settings, digits_workload, max_quality_drop=-1.0)
