"""`accelkit train --model FOLDER --data FILE`: fine-tune a tiny classifier end to end (the saved
folder is what optimize --model reads), and bad input as one line with exit code 2."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import model_folders as mf  # noqa: E402
from accelkit.cli import main  # noqa: E402


def _exit_code(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exited:
        main(args)
    return exited.value.code


def test_train_a_classifier_folder_then_load_it_for_optimize(tmp_path, capsys):
    folder, data = mf.bert_classifier_folder(tmp_path), mf.labelled_csv(tmp_path)
    out = tmp_path / "run"
    main(["train", "--model", str(folder), "--data", str(data), "--text-column", "body", "--label-column",
          "sentiment", "--out", str(out), "--max-steps", "3", "--micro-batch", "8", "--no-progress",
          "--group-by-length", "--checkpoint-every", "2"])
    printed = capsys.readouterr().out
    assert "val_loss" in printed and "val_accuracy" in printed and "accelkit optimize --model" in printed
    summary = json.loads((out / "result.json").read_text())
    assert summary["task"] == "text-classification" and summary["steps_done"] == 3
    assert set(summary["validation"]) == {"val_loss", "val_accuracy"}
    assert summary["split"]["n_calib"] == 60
    from accelkit.workloads import workload_from_model

    workload = workload_from_model(out / "model", data, text_column="body", label_column="sentiment")
    assert workload.task == "text-classification" and workload.build_model() is not None


def test_train_a_sentence_embedding_folder_on_pairs(tmp_path, capsys):
    folder, data = mf.sentence_transformers_folder(tmp_path), mf.pairs_jsonl(tmp_path, 40)
    out = tmp_path / "run"
    main(["train", "--model", str(folder), "--data", str(data), "--out", str(out), "--max-steps", "2",
          "--micro-batch", "8", "--no-progress"])
    summary = json.loads((out / "result.json").read_text())
    assert summary["task"] == "sentence-embedding" and summary["steps_done"] == 2
    assert set(summary["validation"]) == {"val_loss", "val_accuracy"}
    from accelkit.workloads import workload_from_model

    assert workload_from_model(out / "model", mf.text_file(tmp_path, 20)).task == "sentence-embedding"


def test_train_an_image_classifier_folder_on_class_sub_folders(tmp_path, capsys):
    folder, images = mf.cnn_folder(tmp_path), mf.image_folder(tmp_path)
    out = tmp_path / "run"
    main(["train", "--model", str(folder), "--data", str(images), "--out", str(out), "--max-steps", "2",
          "--micro-batch", "4", "--no-progress", "--num-workers", "1", "--channels-last"])
    summary = json.loads((out / "result.json").read_text())
    assert summary["task"] == "image-classification" and summary["steps_done"] == 2
    assert set(summary["validation"]) == {"val_loss", "val_accuracy"}
    from accelkit.workloads import workload_from_model

    assert workload_from_model(out / "model", images).task == "image-classification"


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    folder, data = mf.bert_classifier_folder(tmp_path), mf.labelled_csv(tmp_path)
    capsys.readouterr()  # the fixtures' own saving output
    base = ["train", "--model", str(folder), "--out", str(tmp_path / "run"), "--max-steps", "1", "--no-progress"]
    cases = {
        "--label-column": [*base, "--data", str(data), "--text-column", "body"],  # csv labels not named
        "not causal-lm": [*base, "--data", str(data), "--text-column", "body", "--task", "causal-lm"],
        "not sentence-embedding": [*base, "--data", str(data), "--task", "sentence-embedding"],
        "not yet supported": [*base, "--data", str(data), "--task", "token-classification"],
        "--model replaces --workload": [*base, "--data", str(data), "--workload", "digits"],
        "not one of the model's 3 classes": [*base, "--data", str(data), "--text-column", "body", "--label-column",
                                              "id"],  # ids 0..119 as labels
        "is more than this machine's": [*base, "--data", str(data), "--nproc", "4096"],
    }
    for needle, args in cases.items():
        assert _exit_code(args) == 2, needle
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run" / "model").exists()


def test_bench_train_with_a_model_prints_the_trainer_baseline(tmp_path, capsys):
    folder, data = mf.bert_classifier_folder(tmp_path), mf.labelled_csv(tmp_path)
    out = tmp_path / "bench.json"
    main(["bench", "--task", "train", "--model", str(folder), "--data", str(data), "--text-column", "body",
          "--label-column", "sentiment", "--variants", "default,fp32", "--repeats", "1", "--batch-size", "8",
          "--out", str(out)])
    printed = capsys.readouterr().out
    assert "against default" in printed and "fp32" in printed
    summary = json.loads(out.read_text())
    assert summary["baseline"] == "default" and [v["name"] for v in summary["variants"]] == ["default", "fp32"]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_nproc_2_saves_the_folder_one_process_saves_with_rank_0_weights(tmp_path, monkeypatch, strategy):
    from safetensors.torch import load_file

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))  # the workers import this accelkit
    folder, data = mf.bert_classifier_folder(tmp_path), mf.labelled_csv(tmp_path, 60)
    args = ["train", "--model", str(folder), "--data", str(data), "--text-column", "body", "--label-column",
            "sentiment", "--max-steps", "2", "--micro-batch", "4", "--target-batch", "8", "--no-progress"]
    main([*args, "--out", str(tmp_path / "one")])  # 4 × 2 accumulation
    main([*args, "--out", str(tmp_path / "two"), "--nproc", "2", "--strategy", strategy])  # 4 × 2 processes
    one, two = tmp_path / "one" / "model", tmp_path / "two" / "model"
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    summary = json.loads((tmp_path / "two" / "result.json").read_text())
    assert summary["world_size"] == 2 and summary["steps_done"] == 2 and summary["effective_batch_size"] == 8
    saved = load_file(str(two / "model.safetensors"))
    final = load_file(summary["checkpoint_path"] + "/model.safetensors")  # rank 0 wrote it after the last step
    assert all(torch.equal(saved[k], final["model." + k]) for k in saved)
    assert set(load_file(str(one / "model.safetensors"))) == set(saved)
    from accelkit.workloads import workload_from_model

    assert workload_from_model(two, data, text_column="body", label_column="sentiment").task == "text-classification"


def test_resume_with_another_model_folder_is_one_line_and_keeps_the_run(tmp_path, capsys):
    folder, data = mf.bert_classifier_folder(tmp_path), mf.labelled_csv(tmp_path)
    out = tmp_path / "run"
    common = ["--data", str(data), "--text-column", "body", "--label-column", "sentiment", "--out", str(out),
              "--micro-batch", "8", "--no-progress", "--checkpoint-every", "1"]
    main(["train", "--model", str(folder), *common, "--max-steps", "2"])
    before = (out / "model" / "model.safetensors").read_bytes()
    other = tmp_path / "other"
    folder.rename(other)  # another classifier of the same classes and tokenizer: one layer instead of two
    from transformers import BertForSequenceClassification

    config = mf._bert_config(num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"}, label2id={"neg": 0, "neu": 1, "pos": 2})
    config.num_hidden_layers = 1
    BertForSequenceClassification(config).save_pretrained(other)
    capsys.readouterr()
    assert _exit_code(["train", "--model", str(other), *common, "--max-steps", "4", "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert "written by another model" in err and "BertForSequenceClassification" in err and len(err.splitlines()) == 1
    assert (out / "checkpoints" / "step-00000002").is_dir() and (out / "model" / "model.safetensors").read_bytes() == before


def test_nan_loss_stops_with_the_step_and_a_hint_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    folder, data = mf.bert_classifier_folder(tmp_path), mf.labelled_csv(tmp_path)
    out = tmp_path / "run"
    capsys.readouterr()
    code = _exit_code(["train", "--model", str(folder), "--data", str(data), "--text-column", "body", "--label-column",
                       "sentiment", "--out", str(out), "--micro-batch", "4", "--no-progress", "--checkpoint-every", "1",
                       "--max-steps", "12", "--lr", "1e30"])  # AdamW's first step puts weights at ~1e30
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "non-finite" in err and "(step " in err and "lower lr" in err and "last good checkpoint" in err
    from accelkit.train import latest_checkpoint

    kept = latest_checkpoint(out / "checkpoints")
    assert kept is not None and str(kept) in err
    assert not (out / "model").exists()  # no model folder from a diverged run


@pytest.mark.slow
def test_nproc_2_trains_a_sentence_embedding_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))
    folder, data = mf.sentence_transformers_folder(tmp_path), mf.pairs_jsonl(tmp_path, 40)
    out = tmp_path / "run"
    main(["train", "--model", str(folder), "--data", str(data), "--out", str(out), "--nproc", "2", "--max-steps", "2",
          "--micro-batch", "4", "--no-progress"])
    summary = json.loads((out / "result.json").read_text())
    assert summary["world_size"] == 2 and summary["task"] == "sentence-embedding"
    assert (out / "model" / "modules.json").is_file() and (out / "model" / "model.safetensors").is_file()
