import json

import pytest

from accelkit.cli import main

BASE = ["train", "-w", "digits", "--width", "8", "--micro-batch", "16", "--no-progress", "--lr", "1e-3"]


def test_cli_trains_digits_with_accumulation_and_reports_scaled_lr(tmp_path, capsys):
    main([*BASE, "--target-batch", "32", "--base-batch", "16", "--max-steps", "3", "--out", str(tmp_path),
          "--checkpoint-every", "2", "--stop-after", "2"])
    first = json.loads((tmp_path / "result.json").read_text())
    assert first["steps_done"] == 2 and first["accumulation_steps"] == 2 and first["lr"] == pytest.approx(2e-3)
    main([*BASE, "--target-batch", "32", "--base-batch", "16", "--max-steps", "3", "--out", str(tmp_path), "--resume"])
    second = json.loads((tmp_path / "result.json").read_text())
    assert second["resumed_from_step"] == 2 and second["steps_done"] == 3
    assert 0.0 <= second["validation"]["val_accuracy"] <= 1.0 and second["validation"]["val_loss"] > 0
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3
    assert "linear scaling of 0.001" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--precision", "fp8"], "precision='fp8'"),
        (["--target-batch", "24"], "not a multiple"),
        (["--resume"], "need output_dir"),
        (["--size", "large"], "applies to gpt-mini only"),
        (["--size", "huge"], "size='huge'"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args, message, capsys):
    with pytest.raises(SystemExit) as info:
        main([*BASE, "--max-steps", "1", *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_size_large_trains_the_larger_gpt_mini(tmp_path):
    from accelkit.train.tasks import GPT_MINI_SIZES

    main(["train", "-w", "gpt-mini", "--size", "large", "--micro-batch", "2", "--max-steps", "1", "--no-progress",
          "--out", str(tmp_path)])
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["size"] == "large" and result["steps_done"] == 1
    large = GPT_MINI_SIZES["large"]
    # 12·n_layer·n_embd² is the transformer blocks' weight count; the large shape must be that big
    assert result["params"] > 12 * large["n_layer"] * large["n_embd"] ** 2


def test_cli_unknown_workload_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "-w", "no-such-workload"])
    assert info.value.code == 2 and "unknown" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_nproc_2_launches_torchrun_and_rank_0_reports(tmp_path, monkeypatch):
    import os
    import sys

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))
    main([*BASE, "--target-batch", "64", "--max-steps", "4", "--out", str(tmp_path), "--nproc", "2"])
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["world_size"] == 2 and result["accumulation_steps"] == 2 and result["steps_done"] == 4
