"""Tampered or half-written training folders: one line and exit 2, or a clean resume."""

from __future__ import annotations

import json
import shutil

import pytest

from accelkit.cli import main

TRAIN = ["train", "--workload", "digits", "--max-steps", "2", "--checkpoint-every", "1", "--no-progress",
         "--micro-batch", "16"]


def _run(args):
    try:
        main(args)
    except SystemExit as exc:
        return exc.code or 0
    return 0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "run"
    assert _run([*TRAIN, "--out", str(out)]) == 0
    return out


@pytest.fixture
def run_dir(trained, tmp_path):
    return shutil.copytree(trained, tmp_path / "run")


def test_latest_json_that_is_not_an_object_is_one_line(run_dir, capsys):
    (run_dir / "checkpoints" / "latest.json").write_text("[1]")
    assert _run([*TRAIN, "--out", str(run_dir), "--resume"]) == 2
    assert "latest.json holds [1]" in capsys.readouterr().err


def test_latest_json_pointing_outside_the_checkpoint_folder_is_refused(run_dir, tmp_path, capsys):
    shutil.copytree(run_dir / "checkpoints" / "step-00000002", tmp_path / "elsewhere")
    (run_dir / "checkpoints" / "latest.json").write_text(json.dumps({"dir": "../../elsewhere", "step": 2}))
    assert _run([*TRAIN, "--out", str(run_dir), "--resume"]) == 2
    assert "not a step-XXXXXXXX folder" in capsys.readouterr().err


def test_partial_last_metrics_line_after_a_kill_still_resumes(run_dir):
    metrics = run_dir / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"step": 3, "lo')
    assert _run([*TRAIN[:4], "3", *TRAIN[5:], "--out", str(run_dir), "--resume"]) == 0
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_resume_with_another_optimizer_is_one_line(run_dir, capsys):
    assert _run([*TRAIN, "--out", str(run_dir), "--resume", "--optimizer", "sgd"]) == 2
    assert "trained with optimizer='adamw'" in capsys.readouterr().err
