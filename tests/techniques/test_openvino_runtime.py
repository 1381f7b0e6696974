"""openvino / openvino-bf16 / openvino-int8: the exported graph compiled by OpenVINO (in the default
install), and a machine where OpenVINO does not load gets a reason, never a crash."""

from __future__ import annotations

import sys

import openvino  # noqa: F401  (the default install has it: a missing one fails here, never skips)
import pytest
import torch

from accelkit.saving import load, save
from accelkit.variants import build_variant, list_variants


def test_openvino_gives_the_float_outputs_and_saves(digits_workload, digits_model, tmp_path, monkeypatch):
    monkeypatch.setenv("ACCELKIT_THREADS", "2")
    settings = digits_workload.default_settings(64)
    built = build_variant("openvino", digits_model, settings, digits_workload)
    assert built.form == "openvino" and built.details["streams"] in (1, 2)
    # the probe's choice is the plan's config: a saved plan replays it rather than probing again
    assert built.plan == [{"technique": "openvino", "config": {"streams": built.details["streams"], "version": 1}}]
    assert set(built.details["streams_probe_s"]) == {"1", "2"}
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


def test_every_optimize_searches_the_openvino_variants(digits_workload):
    from accelkit.optimize.config import OptimizeConfig
    from accelkit.optimize.search import _singles
    from accelkit.techniques.openvino_runtime import _bf16_native

    names, skipped = _singles(digits_workload, OptimizeConfig("digits"))
    assert {"openvino", "openvino-int8"} <= set(names)
    if _bf16_native() is None:
        assert "openvino-bf16" in names
    else:  # this CPU has no native bf16: a row with the reason, not a silent gap
        assert "openvino-bf16" not in names and "no native bf16" in skipped["openvino-bf16"]


def test_openvino_that_does_not_load_is_a_reason_for_env_and_optimize(digits_workload, monkeypatch):
    import accelkit.techniques.openvino_runtime as ovr
    from accelkit.optimize.config import OptimizeConfig
    from accelkit.optimize.search import _singles

    class Broken:  # installed, but its CPU plugin does not load
        @staticmethod
        def Core():  # noqa: N802
            raise RuntimeError("libopenvino_intel_cpu_plugin.so: cannot open shared object file\nmore")

    ovr._cpu_capabilities.cache_clear()
    monkeypatch.setitem(sys.modules, "openvino", Broken())
    monkeypatch.setattr(ovr, "_OPENVINO_INSTALLED", lambda: None)  # found on disk, as a broken install is
    try:
        reason = ovr.OPENVINO_AVAILABLE()
        assert reason.startswith("openvino is installed but does not load here (RuntimeError: libopenvino")
        assert ovr._bf16_native() == reason and "\n" not in reason
        assert not {"openvino", "openvino-bf16", "openvino-int8"} & set(list_variants(digits_workload))
        names, skipped = _singles(digits_workload, OptimizeConfig("digits", candidates=["bf16", "openvino-int8"]))
        assert names == ["bf16"] and skipped["openvino-int8"] == f"not offered here: {reason}"
    finally:
        ovr._cpu_capabilities.cache_clear()


def test_a_plan_that_names_the_streams_is_not_probed_and_candidates_are_few(digits_workload, digits_model,
                                                                             monkeypatch):
    from accelkit.errors import ConfigError
    from accelkit.techniques.openvino_runtime import OpenVinoStepConfig, stream_candidates
    from accelkit.techniques.registry import build_plan

    assert stream_candidates(1) == [1] and stream_candidates(2) == [1, 2]
    assert stream_candidates(16) == [1, 2, 4, 16] and stream_candidates(6) == [1, 2, 4, 6]
    with pytest.raises(ConfigError, match="streams=0"):
        OpenVinoStepConfig(streams=0)
    monkeypatch.setenv("ACCELKIT_THREADS", "2")
    settings = digits_workload.default_settings(64)
    built = build_plan([{"technique": "openvino", "config": {"streams": 2}}], digits_model, settings, digits_workload)
    assert built.details["streams"] == 2 and built.details["streams_from"] == "the plan"
    data = digits_workload.eval_data(64)
    with torch.no_grad():
        torch.testing.assert_close(digits_workload.predict(built.model, data, built.settings),
                                   digits_workload.predict(digits_model, data, settings), rtol=1e-4, atol=1e-4)


def test_the_ffn_down_projections_are_found_from_the_graph_and_kept_float():
    import onnx

    from accelkit.export.onnx import export_onnx
    from accelkit.techniques.openvino_runtime import activation_fed_matmuls, quantize_onnx_nncf

    torch.manual_seed(0)
    ffn = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 16)).eval()
    x = torch.randn(4, 16)
    graph = export_onnx(ffn, x)
    nodes = {n.name: n for n in onnx.load_from_string(graph).graph.node}
    down = activation_fed_matmuls(graph)
    assert len(down) == 1 and nodes[down[0]].op_type in ("MatMul", "Gemm")
    assert len([n for n in nodes.values() if n.op_type in ("MatMul", "Gemm")]) == 2  # the up-projection is not
    samples = [{"input": torch.randn(1, 16).numpy()} for _ in range(8)]
    name = onnx.load_from_string(graph).graph.input[0].name
    samples = [{name: s["input"]} for s in samples]
    q = onnx.load_from_string(quantize_onnx_nncf(graph, samples, keep_float=down))
    fed = {i for n in q.graph.node if n.name == down[0] for i in n.input}
    producers = {o: n.op_type for n in q.graph.node for o in n.output}
    assert "DequantizeLinear" not in {producers.get(i) for i in fed}  # its input is not quantized
    assert "DequantizeLinear" in producers.values()  # the other MatMul is
