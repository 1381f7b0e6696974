"""``bench --task train --model``: the transformers Trainer rows (default = the baseline) beside
accelkit's variants on a tiny BERT classifier, equal steps from the same init; a failing row says why."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import model_folders as mf  # noqa: E402
from accelkit.errors import UnknownVariantError  # noqa: E402
from accelkit.train.bench import bench_train_model  # noqa: E402
from accelkit.train.hf_trainer import TRAINER_ROWS  # noqa: E402
from accelkit.train.user_model import user_training_task  # noqa: E402


@pytest.fixture
def classifier_task(tmp_path):
    return user_training_task(mf.bert_classifier_folder(tmp_path), mf.labelled_csv(tmp_path), text_column="body",
                              label_column="sentiment")


def test_trainer_rows_and_accelkit_variants_train_equal_steps(classifier_task, monkeypatch):
    monkeypatch.setitem(TRAINER_ROWS, "trainer-broken", {"no_such_training_argument": True})
    results = bench_train_model(classifier_task, ["grouped"], ["trainer-group-by-length", "trainer-broken"],
                                batch_size=8, steps_per_call=1, repeats=2, warmup=1, lr=1e-3, roofline_size=64)
    by_name = {v.name: v for v in results.variants}
    assert list(by_name) == ["default", "trainer-group-by-length", "trainer-broken", "fp32", "grouped"]
    assert results.baseline == "default" and by_name["default"].speedup == 1.0
    assert "no_such_training_argument" in by_name["trainer-broken"].error
    ran = [v for v in results.variants if v.error is None]
    assert {v.details["steps_trained"] for v in ran} == {3}  # first call + 2 rounds, 1 step each
    for v in ran:
        assert v.throughput > 0 and v.throughput_unit == "samples/s"
        assert set(v.quality) >= {"val_loss", "val_accuracy"}
        assert v.flops_per_item and v.flops_per_item > 0  # scaled to the batches this row trained on
    # the same init, data, LR and steps: the Trainer's loss lands where accelkit's fp32 does
    assert by_name["fp32"].quality["val_loss"] == pytest.approx(by_name["default"].quality["val_loss"], rel=0.02)
    assert by_name["trainer-group-by-length"].details["trainer_flags"] == {"group_by_length": True}


def test_unknown_rows_are_refused(classifier_task):
    with pytest.raises(UnknownVariantError, match="trainer-fp8"):
        bench_train_model(classifier_task, [], ["trainer-fp8"])


def test_the_trainer_rows_collator_counts_the_padded_tokens_each_step_trains_on():
    # a row's FLOPs (and MFU) follow the padded size of the batches it trained on, not the first batch's
    from accelkit.train.hf_trainer import _TrainerCollator
    from accelkit.train.user_model import PaddingCollator

    collate = _TrainerCollator(PaddingCollator(pad_id=0, causal=False))
    batch = collate([{"input_ids": [5, 6, 7], "labels": 1}, {"input_ids": [8], "labels": 0}])
    collate([{"input_ids": [1, 2], "labels": 1}])
    assert batch["input_ids"].shape == (2, 3) and batch["labels"].tolist() == [1, 0]
    assert collate.elements == [6, 2]
