"""`accelkit run MODEL_DIR --input PATH --output PATH`: Parquet parts and a summary line; each kind
of bad input is one line and exit code 2, with nothing written."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import model_folders as mf  # noqa: E402
from accelkit.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> Path:
    from accelkit.saving import save
    from accelkit.variants import build_variant
    from accelkit.workloads import workload_from_model

    root = tmp_path_factory.mktemp("shipped")
    wl = workload_from_model(mf.sentence_transformers_folder(root), mf.text_file(root, 40))
    return save(build_variant("onnx", wl.build_model(), wl.default_settings(), wl), root / "model", workload=wl)


def _exit_code(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_run_writes_parts_and_prints_a_summary_line(shipped, tmp_path, capfd):
    data = mf.labelled_csv(tmp_path, 30)
    out = tmp_path / "out"
    code = _exit_code(["run", str(shipped), "--input", str(data), "--output", str(out), "--engine", "local",
                       "--text-column", "body", "--id-column", "id", "--block-size", "8"])
    assert code == 0
    assert "30 items" in capfd.readouterr().out
    assert pq.read_table(out).column("id").to_pylist() == [str(i) for i in range(30)]
    assert json.loads((out / "_summary.json").read_text())["blocks"] == 4


@pytest.mark.parametrize("case, message", [
    ("no-model", "does not exist"),
    ("not-a-save", "not an accelkit save"),
    ("no-input", "does not exist"),
    ("format", "does not read"),
    ("column", "no column 'nope'"),
    ("foreign", "holds files accelkit did not write"),
    ("no-ray", "needs Ray Data"),
    ("address", "Ray is not reachable at 127.0.0.1:9"),
    ("max-new-tokens", "--max-new-tokens is for text-generation models"),
])
def test_bad_input_is_one_line_and_exit_2(shipped, tmp_path, capfd, monkeypatch, case, message):
    data = mf.labelled_csv(tmp_path, 5)
    out = tmp_path / "out"
    args = {"model": str(shipped), "input": str(data), "extra": ["--text-column", "body", "--engine", "local"]}
    if case == "no-model":
        args["model"] = str(tmp_path / "missing")
    elif case == "not-a-save":
        args["model"] = str(tmp_path)
    elif case == "no-input":
        args["input"] = str(tmp_path / "missing.csv")
    elif case == "format":
        (tmp_path / "data.xlsx").write_bytes(b"PK")
        args["input"] = str(tmp_path / "data.xlsx")
    elif case == "column":
        args["extra"] = ["--text-column", "nope", "--engine", "local"]
    elif case == "foreign":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif case == "no-ray":
        monkeypatch.setattr("accelkit.batch_run.ray_engine.ray_available", lambda: False)
        args["extra"] = ["--text-column", "body", "--engine", "ray"]
    elif case == "address":  # nothing listens on port 9 (discard): refused at once, not after Ray's retries
        pytest.importorskip("ray")
        args["extra"] = ["--text-column", "body", "--engine", "ray", "--address", "127.0.0.1:9"]
    else:
        args["extra"] = ["--text-column", "body", "--engine", "local", "--max-new-tokens", "4"]
    code = _exit_code(["run", args["model"], "--input", args["input"], "--output", str(out), *args["extra"]])
    err = capfd.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not list(out.glob("part-*")) and not (out / "_run.json").exists()
    if case == "foreign":
        assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"


def test_overwrite_writes_beside_other_files_and_replaces_only_its_own(shipped, tmp_path, capfd):
    data = mf.labelled_csv(tmp_path, 12)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "sub").mkdir()
    (out / "sub" / "part-000000.parquet").write_text("not ours: in a subfolder")
    args = ["run", str(shipped), "--input", str(data), "--output", str(out), "--engine", "local",
            "--text-column", "body", "--block-size", "4", "--overwrite"]
    assert _exit_code(args) == 0
    assert _exit_code([*args[:-2], "8", "--overwrite"]) == 0  # another block size: the earlier parts go
    capfd.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["_run.json", "_summary.json", "notes.txt", "part-000000.parquet",
                                                     "part-000001.parquet", "sub"]
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "sub" / "part-000000.parquet").read_text() == "not ours: in a subfolder"


def test_sigterm_stops_the_run_with_a_resume_hint_and_resume_finishes_it(shipped, tmp_path):
    import os
    import signal
    import subprocess
    import time

    data = tmp_path / "big.txt"
    data.write_text("\n".join(mf.sentences(400) * 5) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    args = [sys.executable, "-m", "accelkit", "run", str(shipped), "--input", str(data), "--output", str(out),
            "--engine", "local", "--block-size", "20", "--threads", "1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"),
           "ACCELKIT_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not list(out.glob("part-*.parquet")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-2000:]
    assert "--resume" in stdout
    written = len(list(out.glob("part-*.parquet")))
    assert 1 <= written < 100 and not list(out.glob(".part-*"))
    code = _exit_code(["run", str(shipped), "--input", str(data), "--output", str(out), "--engine", "local",
                       "--block-size", "20", "--resume"])
    assert code == 0
    summary = json.loads((out / "_summary.json").read_text())
    assert summary["blocks_resumed"] == written and summary["items"] == 2000
    assert sorted(pq.read_table(out).column("id").to_pylist()) == list(range(2000))


def test_max_new_tokens_reaches_a_text_generation_model(tmp_path, capfd):
    from accelkit.saving import load, save
    from accelkit.variants import build_variant
    from accelkit.workloads import workload_from_model

    wl = workload_from_model(mf.llama_folder(tmp_path), mf.prompts_file(tmp_path, 6), task="text-generation",
                             max_new_tokens=5)
    model = save(build_variant("default", wl.build_model(), wl.default_settings(), wl), tmp_path / "llama",
                 "default", workload=wl)
    prompts = (tmp_path / "prompts.txt").read_text().splitlines()
    out = tmp_path / "out"
    code = _exit_code(["run", str(model), "--input", str(tmp_path / "prompts.txt"), "--output", str(out),
                       "--engine", "local", "--batch-size", "2", "--max-new-tokens", "2"])
    assert code == 0 and "6 items" in capfd.readouterr().out
    table = pq.read_table(out).sort_by("id")
    assert table.column("id").to_pylist() == list(range(6))
    assert table.column("text").to_pylist() == load(model).generate(prompts, max_new_tokens=2, batch_size=2)
