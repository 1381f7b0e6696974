"""A shipped model folder is self-contained: it loads in a fresh process with the original
model folder gone, imports nothing it names, and gives the outputs the measured model gave."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import model_folders as mf  # noqa: E402
from accelkit.errors import SchemaError  # noqa: E402
from accelkit.export.artifact import ShipError, ShippedModel  # noqa: E402
from accelkit.saving import load, save  # noqa: E402
from accelkit.variants import build_variant  # noqa: E402
from accelkit.workloads import workload_from_model  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _fresh_python(code: str, cwd: Path) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def st(tmp_path_factory):
    root = tmp_path_factory.mktemp("ship")
    folder, text = mf.sentence_transformers_folder(root), mf.text_file(root, 80)
    wl = workload_from_model(folder, text)
    return root, folder, wl, wl.build_model()


@pytest.mark.parametrize("variant, fmt", [("onnx-int8-dynamic", "hf-onnx"), ("int8-aware-torch", "hf-torch"),
                                          ("bf16-cast", "hf-torch")])
def test_shipped_folder_encodes_in_a_fresh_process_without_the_original(st, tmp_path, variant, fmt):
    root, folder, wl, base = st
    built = build_variant(variant, base, wl.default_settings(), wl, max_quality_drop=0.02)
    out = save(built, tmp_path / "model", workload=wl)
    meta = json.loads((out / "plan.json").read_text())
    assert meta["format"] == fmt and "not_self_contained" not in meta
    texts = wl.eval_data(24)
    np.save(tmp_path / "measured.npy", wl.predict(built.model, texts, built.settings).numpy())
    (tmp_path / "texts.json").write_text(json.dumps(list(texts)))
    moved = root / f"moved-{variant}"
    shutil.move(str(folder), moved)  # the original model folder is gone while the shipped one loads
    try:
        _fresh_python(
            "import json, numpy as np, sys, accelkit\n"
            "m = accelkit.load('model')\n"
            "texts = json.load(open('texts.json'))\n"
            "e = m.encode(texts, batch_size=5)\n"
            "ref = np.load('measured.npy')\n"
            "cos = (e * ref).sum(1) / np.linalg.norm(e, axis=1) / np.linalg.norm(ref, axis=1)\n"
            "assert e.shape == ref.shape, (e.shape, ref.shape)\n"
            "assert abs(np.linalg.norm(e, axis=1) - 1).max() < 1e-4  # the folder's Normalize module\n"
            "assert cos.min() > 0.999, cos.min()\n"
            "assert 'accelkit.workloads.user_model' not in sys.modules\n",
            tmp_path)
    finally:
        shutil.move(str(moved), folder)
    assert not any(p.suffix == ".py" for p in out.rglob("*"))


def test_loaded_torch_plan_gives_the_measured_outputs_exactly(tmp_path):
    folder, text = mf.gpt2_folder(tmp_path), mf.text_file(tmp_path, 30)
    wl = workload_from_model(folder, text)
    built = build_variant("int8-dynamic", wl.build_model(), wl.default_settings(), wl)
    loaded = load(save(built, tmp_path / "model", workload=wl))
    assert isinstance(loaded, ShippedModel) and loaded.task == "causal-lm"
    data = wl.eval_data(8)
    assert torch.equal(wl.predict(built.model, data, built.settings), wl.predict(loaded.model, data, loaded.settings))
    with pytest.raises(Exception, match="embedding models"):
        loaded.encode(["a sentence"])


def test_a_plan_that_cannot_ship_is_refused_at_save_time(st, tmp_path):
    """torchao's weight-only tensors have no saved form: refused whether or not shipping was
    asked for (there is no rebuild-by-plan fallback: loading never re-runs a technique)."""
    _, _, wl, base = st
    built = build_variant("int8-weight-only", base, wl.default_settings(), wl)
    with pytest.raises(ShipError, match="cannot ship"):
        save(built, tmp_path / "strict", workload=wl, ship=True)
    assert not (tmp_path / "strict").exists()  # nothing half-written
    for ship in (None, False):
        with pytest.raises(ShipError, match="int8-dynamic or ONNX Runtime"):
            save(built, tmp_path / "lenient", workload=wl, ship=ship)
    assert not (tmp_path / "lenient").exists()


def test_a_tampered_shipped_file_is_refused(st, tmp_path):
    _, _, wl, base = st
    out = save(build_variant("onnx", base, wl.default_settings(), wl), tmp_path / "model", workload=wl)
    cfg = json.loads((out / "config.json").read_text())
    cfg["num_hidden_layers"] = 1
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(SchemaError, match="checksum"):
        load(out)


def test_a_shipped_folder_of_an_unknown_task_is_refused(st, tmp_path):
    _, _, wl, base = st
    out = save(build_variant("onnx", base, wl.default_settings(), wl), tmp_path / "model", workload=wl)
    meta = json.loads((out / "plan.json").read_text())
    meta["pipeline"]["task"] = "translation"
    (out / "plan.json").write_text(json.dumps(meta))
    with pytest.raises(SchemaError, match="task 'translation' is not one of .*sentence-embedding"):
        load(out)
