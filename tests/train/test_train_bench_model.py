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


def test_an_image_classifier_gets_the_trainer_rows_and_a_reason_for_group_by_length(tmp_path):
    # the Trainer gets {pixel_values, labels} of the same images and the model computes its own
    # cross-entropy: same init, images, batch, LR, warm-up and steps as accelkit's fp32 row
    task = user_training_task(mf.cnn_folder(tmp_path), mf.image_folder(tmp_path))
    results = bench_train_model(task, [], ["trainer-group-by-length"], batch_size=4, steps_per_call=2, repeats=6,
                                warmup=1, lr=3e-4, roofline_size=64)
    by_name = {v.name: v for v in results.variants}
    assert list(by_name) == ["default", "trainer-group-by-length", "fp32"] and results.baseline == "default"
    reason = by_name["trainer-group-by-length"].error
    assert reason.startswith("ConfigError: group_by_length") and "\n" not in reason
    assert by_name["trainer-group-by-length"].details["trainer_flags"] == {"group_by_length": True}
    assert by_name["default"].details["steps_trained"] == by_name["fp32"].details["steps_trained"] == 14
    assert by_name["default"].flops_per_item == pytest.approx(by_name["fp32"].flops_per_item)  # same image size
    _lands_near_fp32(task, by_name["default"], by_name["fp32"], share=0.25)


def _lands_near_fp32(task, trainer, fp32, share):
    """The Trainer's held-out loss is within 3% of accelkit's fp32 row's, both went down from the
    init's, and their gap is under ``share`` of the way fp32 travelled: the two differ only in
    which batches they drew (another sampler), dropout draws, and the Trainer's warm-up starting
    at LR 0, one step behind accelkit's."""
    start = task.evaluate(task.model)["val_loss"]  # task.model is the untrained init
    assert trainer.quality["val_loss"] == pytest.approx(fp32.quality["val_loss"], rel=0.03)
    assert trainer.quality["val_loss"] < start and fp32.quality["val_loss"] < start
    assert abs(trainer.quality["val_loss"] - fp32.quality["val_loss"]) < share * (start - fp32.quality["val_loss"])


def test_a_module_function_image_model_gets_a_trainer_row_saying_why_not(tmp_path):
    task = user_training_task("train_testkit:image_cnn", mf.image_folder(tmp_path))
    results = bench_train_model(task, [], [], batch_size=4, steps_per_call=1, repeats=1, warmup=1, roofline_size=64)
    by_name = {v.name: v for v in results.variants}
    assert "Hugging Face image classifier folder" in by_name["default"].error and results.baseline == "fp32"


_needs_st_training = pytest.mark.skipif(
    not __import__("importlib").util.find_spec("datasets"),
    reason="SentenceTransformerTrainer needs datasets (pip install 'sentence-transformers[train]')")


@pytest.fixture
def embedding_task(tmp_path):
    return user_training_task(mf.sentence_transformers_folder(tmp_path), mf.pairs_jsonl(tmp_path),
                              task="sentence-embedding")


@_needs_st_training
def test_a_sentence_embedding_folder_gets_sentence_transformers_trainer_rows(embedding_task):
    results = bench_train_model(embedding_task, [], ["trainer-bf16", "trainer-group-by-length"], batch_size=8,
                                steps_per_call=2, repeats=6, warmup=1, lr=1e-3, roofline_size=64)
    by_name = {v.name: v for v in results.variants}
    assert list(by_name) == ["default", "trainer-bf16", "trainer-group-by-length", "fp32"]
    assert results.baseline == "default" and by_name["default"].speedup == 1.0
    assert by_name["trainer-bf16"].details["trainer_flags"] == {"bf16": True}
    assert by_name["trainer-bf16"].compute_dtype == "bf16"
    reason = by_name["trainer-group-by-length"].error
    assert reason.startswith("ConfigError: SentenceTransformerTrainer") and "\n" not in reason
    for name in ("default", "trainer-bf16", "fp32"):
        assert by_name[name].details["steps_trained"] == 14 and by_name[name].flops_per_item > 0
    # MNRL on 8 in-batch pairs; dropout and batch draws differ from accelkit's: half of fp32's way
    _lands_near_fp32(embedding_task, by_name["default"], by_name["fp32"], share=0.5)


@_needs_st_training
@pytest.mark.parametrize("plain", [False, True])
def test_the_sentence_transformers_rows_train_accelkit_s_loss_on_the_same_encoder(tmp_path, plain):
    # on one batch of pairs, MultipleNegativesRankingLoss through the SentenceTransformer the rows
    # train (its tokenizer, Transformer module, Pooling) equals accelkit's loss on accelkit's batch;
    # a plain encoder folder (no sentence-transformers files) gets Transformer + mean Pooling
    import copy

    import torch
    from sentence_transformers.sentence_transformer.data_collator import (
        SentenceTransformerDataCollator,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from accelkit.train.user_embedding import MNRL_SCALE, multiple_negatives_ranking_loss

    folder = mf.sentence_transformers_folder(tmp_path)
    if plain:
        for name in ("modules.json", "sentence_bert_config.json"):
            (folder / name).unlink()
    task = user_training_task(folder, mf.pairs_jsonl(tmp_path), task="sentence-embedding")
    net = copy.deepcopy(task.model).eval()  # no dropout: the two forwards are comparable exactly
    from accelkit.train.sentence_trainer import sentence_transformer_around

    st = sentence_transformer_around(net.model, **task.sentence_source)
    assert st[0].model is net.model  # the rows train the very encoder accelkit's evaluation reads
    pairs = task.dataset.texts[:8]
    features = SentenceTransformerDataCollator(preprocess_fn=st.preprocess)(
        [{"anchor": a, "positive": p} for a, p in pairs])
    with torch.no_grad():
        columns = [{k[len(c) + 1:]: v for k, v in features.items() if k.startswith(c + "_")}
                   for c in ("anchor", "positive")]
        theirs = MultipleNegativesRankingLoss(st.eval(), scale=MNRL_SCALE)(columns, None)
        inputs, targets = task.collate_fn([task.dataset[i] for i in range(8)])
        ours = multiple_negatives_ranking_loss(net(inputs), targets)
    assert float(theirs) == pytest.approx(float(ours), rel=1e-5)


def test_without_sentence_transformers_training_extras_the_rows_say_what_to_install(tmp_path, monkeypatch):
    import sentence_transformers.util

    monkeypatch.setattr(sentence_transformers.util, "is_training_available", lambda: False)
    task = user_training_task(mf.sentence_transformers_folder(tmp_path), mf.pairs_jsonl(tmp_path, 40),
                              task="sentence-embedding")
    results = bench_train_model(task, [], ["trainer-compile"], batch_size=8, steps_per_call=1, repeats=1, warmup=1,
                                roofline_size=64)
    by_name = {v.name: v for v in results.variants}
    assert results.baseline == "fp32" and by_name["fp32"].error is None
    for name in ("default", "trainer-compile"):
        assert by_name[name].error.startswith("MissingDependencyError") and "sentence-transformers[train]" in \
            by_name[name].error
