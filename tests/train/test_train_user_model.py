"""Fine-tuning a user's Hugging Face folder (accelkit.train.user_model): a tiny BERT classifier and a
tiny GPT-2 / Llama from configs, trained a few steps with the accelkit loop, saved, loaded again."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import model_folders as mf  # noqa: E402
from accelkit.errors import ConfigError, DataFileError  # noqa: E402
from accelkit.train import TrainConfig, train  # noqa: E402
from accelkit.train.sampler import ResumableDistributedSampler, length_group_size  # noqa: E402
from accelkit.train.user_model import (  # noqa: E402
    PaddingCollator,
    TokenizedTexts,
    causal_lm_loss,
    user_training_task,
)


def _fit(task, tmp_path: Path, **extra):
    config = TrainConfig(max_steps=4, micro_batch_size=8, lr=3e-3, progress=False, output_dir=str(tmp_path / "run"),
                         **extra)
    return train(task.model, DataLoader(task.dataset, collate_fn=task.collate_fn), task.loss_fn, config)


def test_padding_is_per_batch_and_causal_targets_ignore_the_padding():
    collate = PaddingCollator(pad_id=0, causal=True)
    inputs, targets = collate([([5, 6, 7], None), ([8], None)])
    assert inputs["input_ids"].shape == (2, 3)  # the batch's longest text, not the model's limit
    assert inputs["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert targets.tolist() == [[5, 6, 7], [8, -100, -100]]
    logits = torch.zeros(2, 3, 10)
    # uniform logits: every counted position costs log(10); the padded ones are not counted
    assert float(causal_lm_loss(logits, targets)) == pytest.approx(torch.log(torch.tensor(10.0)).item())
    inputs, classes = PaddingCollator(0, causal=False)([([1, 2], 2), ([3], 0)])
    assert classes.tolist() == [2, 0]


def test_length_grouping_sorts_within_groups_and_keeps_every_item():
    lengths = [1, 9, 3, 7, 5, 2, 8, 4]
    data = TokenizedTexts([[0] * n for n in lengths], None)
    grouped = ResumableDistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=0, lengths=lengths,
                                          group_size=4)
    plain = ResumableDistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=0)
    order = list(grouped)
    assert sorted(order) == list(range(8))
    for start in (0, 4):
        group = order[start : start + 4]
        assert [lengths[i] for i in group] == sorted((lengths[i] for i in group), reverse=True)
        assert set(group) == set(list(plain)[start : start + 4])  # the same shuffled items, reordered


def test_length_groups_are_sized_like_the_trainers_mega_batches():
    # 50 batches on a large set; on a small one, at least 4 groups, so the first steps are not
    # all the epoch's longest texts; never less than a batch
    assert length_group_size(100_000, 16) == 50 * 16
    assert length_group_size(509, 16) == 7 * 16
    assert length_group_size(509 // 4 * 4, 16) * 4 <= 509
    assert length_group_size(10, 16) == 16


def test_a_bert_classifier_trains_saves_and_loads_for_optimize(tmp_path):
    folder, data = mf.bert_classifier_folder(tmp_path), mf.labelled_csv(tmp_path)
    task = user_training_task(folder, data, text_column="body", label_column="sentiment")
    assert task.task == "text-classification"
    before = task.evaluate(task.model)
    assert set(before) == {"val_loss", "val_accuracy"}
    result = _fit(task, tmp_path, group_by_length=True)
    assert result.steps_done == 4
    after = task.evaluate(task.model)
    assert after["val_loss"] != before["val_loss"]
    saved = task.save(tmp_path / "trained")
    assert (saved / "model.safetensors").is_file() and (saved / "tokenizer.json").is_file()

    from accelkit.workloads import workload_from_model

    workload = workload_from_model(saved, data, text_column="body", label_column="sentiment")
    assert workload.task == "text-classification"
    reloaded = workload.build_model()
    state = task.hf_model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in reloaded.state_dict().items())


def test_a_causal_lm_trains_on_plain_text(tmp_path):
    folder, data = mf.gpt2_folder(tmp_path), mf.text_file(tmp_path)
    task = user_training_task(folder, data)
    assert task.task == "causal-lm"
    before = task.evaluate(task.model)["val_loss"]
    _fit(task, tmp_path)
    assert task.evaluate(task.model)["val_loss"] < before
    from accelkit.workloads import workload_from_model

    assert workload_from_model(task.save(tmp_path / "trained"), data).task == "causal-lm"


def test_a_tiny_llama_trains_and_resumes_exactly(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path / "tiny-llama"
    tok = mf._tokenizer(folder, 64)
    tok.eos_token = "[SEP]"
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(mf.SPECIALS) + 600, hidden_size=32, intermediate_size=64,
                                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                 max_position_embeddings=64, eos_token_id=3, pad_token_id=0)).save_pretrained(folder)
    data = mf.text_file(tmp_path)
    whole = user_training_task(folder, data)
    _fit(whole, tmp_path / "whole")
    halves = user_training_task(folder, data)
    out = tmp_path / "halves" / "run"
    common = dict(max_steps=4, micro_batch_size=8, lr=3e-3, progress=False, output_dir=str(out))
    train(halves.model, DataLoader(halves.dataset, collate_fn=halves.collate_fn), halves.loss_fn,
          TrainConfig(**common, checkpoint_every=2, stop_after_steps=2))
    again = user_training_task(folder, data)
    train(again.model, DataLoader(again.dataset, collate_fn=again.collate_fn), again.loss_fn,
          TrainConfig(**common, checkpoint_every=2, resume=True))
    want, got = whole.hf_model.state_dict(), again.hf_model.state_dict()
    assert all(torch.equal(want[k], got[k]) for k in want)
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_bad_input_is_one_line(tmp_path):
    folder, data = mf.bert_classifier_folder(tmp_path), mf.labelled_csv(tmp_path)
    with pytest.raises(DataFileError, match="--label-column"):
        user_training_task(folder, mf.text_file(tmp_path))  # no labels at all
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text("\n".join(json.dumps({"text": s, "label": "maybe"}) for s in mf.sentences(20)) + "\n")
    with pytest.raises(DataFileError, match="not one of the model's 3 classes"):
        user_training_task(folder, wrong)
    with pytest.raises(ConfigError, match="not causal-lm"):
        user_training_task(folder, data, task="causal-lm", text_column="body")
    with pytest.raises(ConfigError, match="feature-extraction: training is not yet supported"):
        user_training_task(mf.sentence_transformers_folder(tmp_path), mf.text_file(tmp_path), task="feature-extraction")
    with pytest.raises(ConfigError, match="not image-classification"):  # a text model on images
        user_training_task(folder, mf.image_folder(tmp_path), task="image-classification")
