"""Contrastive fine-tuning of a sentence-embedding folder (accelkit.train.user_embedding): a tiny
sentence-transformers BERT from a config on (anchor, positive) pairs with MultipleNegativesRankingLoss,
saved as a sentence-transformers folder that optimize --model and accelkit.load read back."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import model_folders as mf  # noqa: E402
from accelkit.data.user_files import read_text_pairs  # noqa: E402
from accelkit.errors import ConfigError, DataFileError  # noqa: E402
from accelkit.train import TrainConfig, train  # noqa: E402
from accelkit.train.user_embedding import multiple_negatives_ranking_loss  # noqa: E402
from accelkit.train.user_model import user_training_task  # noqa: E402

pairs_jsonl = mf.pairs_jsonl


def _fit(task, out: Path, steps: int = 8):
    config = TrainConfig(max_steps=steps, micro_batch_size=8, lr=1e-3, progress=False, output_dir=str(out),
                         epochs=3)
    return train(task.model, DataLoader(task.dataset, collate_fn=task.collate_fn), task.loss_fn, config)


def test_the_loss_is_sentence_transformers_mnrl():
    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    positives = torch.tensor([[2.0, 0.0], [1.0, 1.0]])  # cosines: row 0 (1, .707), row 1 (0, .707)
    got = multiple_negatives_ranking_loss(torch.cat([anchors, positives]), torch.arange(2))
    scores = 20.0 * torch.tensor([[1.0, 0.5**0.5], [0.0, 0.5**0.5]])
    want = torch.nn.functional.cross_entropy(scores, torch.arange(2))
    assert float(got) == pytest.approx(float(want), rel=1e-5)


def test_pairs_from_jsonl_csv_and_consecutive_text_lines(tmp_path):
    assert read_text_pairs(pairs_jsonl(tmp_path, 6)).items[0][0] == mf.sentences(1)[0]
    csv_path = tmp_path / "p.csv"
    csv_path.write_text("q,doc\nwhat is a list,a list holds items\nwhat is a dict,a dict maps keys\n")
    got = read_text_pairs(csv_path, anchor_column="q", positive_column="doc")
    assert got.kind == "pairs" and got.items == [("what is a list", "a list holds items"),
                                                 ("what is a dict", "a dict maps keys")]
    txt = tmp_path / "lines.txt"
    txt.write_text("a1\np1\na2\np2\nodd\n")
    assert read_text_pairs(txt).items == [("a1", "p1"), ("a2", "p2")]  # the unpaired last line is dropped
    with pytest.raises(DataFileError, match="--positive-column"):
        read_text_pairs(csv_path)  # neither anchor/positive nor a known pair of columns


def test_a_sentence_transformers_folder_learns_and_saves_what_optimize_and_load_read(tmp_path):
    folder, data = mf.sentence_transformers_folder(tmp_path), pairs_jsonl(tmp_path)
    task = user_training_task(folder, data)
    assert task.task == "sentence-embedding"
    before = task.evaluate(task.model)
    pooler = {k: v.clone() for k, v in task.hf_model.pooler.state_dict().items()}
    result = _fit(task, tmp_path / "run", steps=10)
    # BERT's own pooler is not what the embedding reads: frozen (DDP would wait for its gradients)
    assert all(torch.equal(v, task.hf_model.pooler.state_dict()[k]) for k, v in pooler.items())
    after = task.evaluate(task.model)
    assert after["val_loss"] < before["val_loss"]  # held-out pairs, never trained on
    assert result.losses[-1] < result.losses[0]
    saved = task.save(tmp_path / "trained")
    assert json.loads((saved / "modules.json").read_text()) == json.loads((folder / "modules.json").read_text())
    assert (saved / "model.safetensors").is_file() and (saved / "1_Pooling" / "config.json").is_file()

    from accelkit.workloads import workload_from_model

    texts = mf.text_file(tmp_path, 40)
    workload = workload_from_model(saved, texts)
    assert workload.task == "sentence-embedding"
    task.model.eval()
    sample = list(workload.eval_data(12))
    with torch.no_grad():
        inputs = task.tokenizer(sample, padding=True, truncation=True, max_length=48, return_tensors="pt")
        trained = torch.nn.functional.normalize(task.model(dict(inputs)), dim=-1)  # the folder's Normalize
    settings = workload.default_settings()
    reloaded = workload.predict(workload.build_model(), sample, settings)  # pooled; normalised when scored
    assert torch.allclose(torch.nn.functional.normalize(reloaded, dim=-1), trained, atol=1e-5)

    from accelkit.saving import load, save
    from accelkit.variants import build_variant

    built = build_variant("default", workload.build_model(), settings, workload)
    shipped = load(save(built, tmp_path / "shipped", workload=workload))
    encoded = torch.as_tensor(shipped.encode(sample, batch_size=5))
    assert torch.allclose(encoded, trained, atol=1e-5)


def test_a_plain_encoder_trains_as_sentence_embedding_and_gets_mean_pooling(tmp_path):
    st = mf.sentence_transformers_folder(tmp_path)
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json"):
        if (st / name).is_file():
            (plain / name).write_bytes((st / name).read_bytes())
    with pytest.raises(ConfigError, match="feature-extraction"):
        user_training_task(plain, mf.text_file(tmp_path), task="causal-lm")
    task = user_training_task(plain, pairs_jsonl(tmp_path, 40), task="sentence-embedding")
    _fit(task, tmp_path / "run", steps=2)
    saved = task.save(tmp_path / "trained")
    from accelkit.workloads.hf_model import read_sentence_config

    sentence = read_sentence_config(saved)
    assert sentence is not None and sentence.pooling == "mean" and not sentence.normalize


def test_bad_pair_options_are_one_line(tmp_path):
    folder = mf.sentence_transformers_folder(tmp_path)
    with pytest.raises(ConfigError, match="no labels"):
        user_training_task(folder, pairs_jsonl(tmp_path, 10), label_column="label")
    with pytest.raises(ConfigError, match="--positive-column goes with --task sentence-embedding"):
        user_training_task(mf.bert_classifier_folder(tmp_path), mf.labelled_csv(tmp_path), text_column="body",
                           label_column="sentiment", positive_column="x")
    with pytest.raises(ConfigError, match="not sentence-embedding"):
        user_training_task(mf.bert_classifier_folder(tmp_path), pairs_jsonl(tmp_path, 10), task="sentence-embedding")
