"""`accelkit optimize --model FOLDER --data FILE`: the user's model and data, end to end, then the
shipped model loaded in a fresh process with the original folder moved away."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import model_folders as mf  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO / "src"),
           "ACCELKIT_CACHE": str(cwd / "cache")}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _alone(folder: Path, script: str, tmp_path: Path) -> str:
    """``script``'s last printed line, run in a fresh process after ``folder`` was moved away."""
    shutil.move(str(folder), tmp_path / "moved-away")
    check = _run([sys.executable, "-c", script], tmp_path)
    assert check.returncode == 0, check.stderr[-3000:]
    return check.stdout.strip().splitlines()[-1]


def test_optimize_a_sentence_transformers_folder_and_ship_it(tmp_path):
    folder, text = mf.sentence_transformers_folder(tmp_path), mf.text_file(tmp_path, 160)
    proc = _run([sys.executable, "-m", "accelkit", "optimize", "--model", str(folder), "--data", str(text),
                 "--max-quality-drop", "0.01", "--time-budget", "90s", "--candidates",
                 "bf16-cast,int8-dynamic,onnx,onnx-int8-dynamic", "--out", "D"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "D"
    results = json.loads((out / "results.json").read_text())
    assert results["baseline"] == "default" and results["variants"][0]["name"] == "default"
    assert results["settings"]["data"]["split"]["n_heldout"] == 80
    assert (out / "report.html").is_file()
    meta = json.loads((out / "model" / "plan.json").read_text())
    assert meta["format"] in ("hf-onnx", "hf-torch"), meta.get("not_self_contained")
    # the fp32 embeddings of the held-out part, from the original folder, before it goes away
    from accelkit.workloads import workload_from_model

    wl = workload_from_model(folder, text)
    held = list(wl.eval_data())
    import numpy as np

    np.save(tmp_path / "fp32.npy", wl.predict(wl.build_model(), held, wl.default_settings()).numpy())
    (tmp_path / "held.json").write_text(json.dumps(held))
    cos = json.loads(_alone(folder, "import json, numpy as np, accelkit\n"
                                    "e = accelkit.load('D/model').encode(json.load(open('held.json')))\n"
                                    "ref = np.load('fp32.npy')\n"
                                    "cos = (e * ref).sum(1) / np.linalg.norm(e, axis=1) / np.linalg.norm(ref, axis=1)\n"
                                    "print(json.dumps({'mean': float(cos.mean()), 'min': float(cos.min())}))\n",
                            tmp_path))
    assert cos["mean"] >= 0.99  # the budget: a cosine drop of at most 0.01 on the held-out part


@pytest.mark.parametrize("args, match", [
    (["--model", "no/such/folder", "--data", "{text}"], "no such folder"),
    (["--model", "{folder}", "--data", "{empty}"], "has no items"),
    (["--model", "{folder}"], "needs --data"),
    (["--model", "{folder}", "--data", "{text}", "--task", "image-classification"], "needs a folder of images"),
])
def test_bad_model_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, match):
    folder, text = mf.sentence_transformers_folder(tmp_path), mf.text_file(tmp_path, 20)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    args = [a.format(folder=folder, text=text, empty=empty) for a in args]
    proc = _run([sys.executable, "-m", "accelkit", "optimize", *args, "--time-budget", "1m", "--out", "D"],
                tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert match in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "D").exists()


@pytest.mark.parametrize("kind", ["text-classification", "causal-lm"])
def test_optimize_a_classifier_and_a_causal_lm_and_load_them_fresh(tmp_path, kind):
    from accelkit.optimize import OptimizeConfig, optimize

    if kind == "text-classification":
        folder, data = mf.bert_classifier_folder(tmp_path), mf.labelled_csv(tmp_path, 80)
        extra = {"text_column": "body", "label_column": "sentiment"}
    else:
        folder, data = mf.gpt2_folder(tmp_path), mf.text_file(tmp_path, 80)
        extra = {}
    options = {"model": str(folder), "data": str(data), "task": kind, **extra}
    cfg = OptimizeConfig(folder.name, max_quality_drop=0.01, time_budget_s=60, repeats=2,
                         candidates=["bf16-cast", "int8-dynamic", "onnx"], model=options)
    res = optimize(cfg, tmp_path / "D")
    assert res.results.baseline == "default"
    meta = json.loads((tmp_path / "D" / "model" / "plan.json").read_text())
    assert meta["format"] in ("hf-onnx", "hf-torch") and meta["pipeline"]["task"] == kind
    # the held-out outputs of the model the final run measured, then the folder loaded alone
    from accelkit.workloads import workload_from_model

    wl = workload_from_model(folder, data, **{k: v for k, v in options.items() if k not in ("model", "data")})
    ids = wl.tokenizer(list(wl.eval_data(8)), padding=True, return_tensors="pt")
    import torch

    torch.save({"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"]}, tmp_path / "batch.pt")
    shape, finite = _alone(folder, "import torch, accelkit\n"
                                   "b = torch.load('batch.pt')\n"
                                   "m = accelkit.load('D/model')\n"
                                   "out = m(**b)\n"
                                   "t = out if isinstance(out, torch.Tensor) else out.logits\n"
                                   "print(tuple(t.shape), bool(torch.isfinite(t.float()).all()))\n",
                           tmp_path).rsplit(" ", 1)
    assert finite == "True" and shape.startswith("(8,")
