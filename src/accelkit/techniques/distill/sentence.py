"""Distilling a BERT-style sentence encoder: a student made of some of the teacher's layers, trained
to match the teacher's mean-pooled sentence embeddings; layer subsets ranked, inputs augmented."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from accelkit.config import Config
from accelkit.errors import ConfigError
from accelkit.tasks.pooling import mean_pool
from accelkit.techniques._blocks import bert_encoder_layers
from accelkit.techniques.distill._common import _check_positive
from accelkit.techniques.distill.losses import HiddenDistillConfig, HiddenDistillLoss
from accelkit.train.schedule import warmup_cosine_factor

__all__ = ["SentenceDistillConfig", "augment_sentences", "distill_sentence_encoder", "make_layer_student", "rank_layer_subsets", "sentence_embeddings"]


@dataclass
class SentenceDistillConfig(Config):
    """A k-layer BERT student initialised from ``keep_layers`` of the teacher, trained to match
    the teacher's mean-pooled sentence embeddings (cosine + ``mse_weight`` · MSE)."""

    # added after the first release: left out of to_dict() at their defaults, so earlier cache keys stay valid
    _omit_at_default: ClassVar[tuple[str, ...]] = ("extra_sentences", "dropout", "init_from")

    keep_layers: tuple[int, ...] = (0, 2, 4)
    epochs: int = 3
    lr: float = 1e-4
    batch_size: int = 32
    max_length: int = 128
    mse_weight: float = 1.0
    token_weight: float = 0.0  # > 0: also match the teacher's last hidden state token by token (needs teacher=)
    augment_copies: int = 0  # extra inputs per sentence (word-span crops, sentence pairs): more data, same split
    train_sentences: int | None = None  # None: all calibration sentences
    extra_sentences: str | None = None  # "stdlib-docstrings": ~14.8k more unlabelled training sentences
    dropout: bool = True  # False: the student trains without dropout (matches a deterministic teacher closer)
    init_from: dict | None = None  # another config's to_dict(): continue from that (cached) student
    seed: int = 0
    version: int = 1

    def __post_init__(self) -> None:
        self.keep_layers = tuple(int(i) for i in self.keep_layers)
        if not self.keep_layers:
            raise ConfigError("keep_layers=(): name at least one teacher layer to keep, e.g. (0, 2, 4)")
        if len(set(self.keep_layers)) != len(self.keep_layers) or list(self.keep_layers) != sorted(self.keep_layers):
            raise ConfigError(f"keep_layers={self.keep_layers}: expected distinct increasing layer indices")
        if min(self.keep_layers) < 0:
            raise ConfigError(f"keep_layers={self.keep_layers}: layer indices start at 0")
        if self.epochs < 0:
            raise ConfigError(f"epochs={self.epochs}: expected 0 (copy layers only) or more")
        _check_positive("lr", self.lr)
        if self.batch_size < 1 or self.max_length < 2:
            raise ConfigError(f"batch_size={self.batch_size}, max_length={self.max_length}: expected ≥1 and ≥2")
        if self.mse_weight < 0 or self.token_weight < 0:
            raise ConfigError(f"mse_weight={self.mse_weight}, token_weight={self.token_weight}: expected ≥ 0")
        if self.augment_copies < 0:
            raise ConfigError(f"augment_copies={self.augment_copies}: expected 0 (none) or more")
        # which names exist is the workload's to say (Workload.unlabelled_text); here only their shape
        if self.extra_sentences is not None and (
            not isinstance(self.extra_sentences, str) or not all(self.extra_sentences.split("+"))
        ):
            raise ConfigError(
                f"extra_sentences={self.extra_sentences!r}: expected None or text names joined with '+', "
                "e.g. 'stdlib-docstrings'"
            )
        if self.init_from is not None and list(self.init_from.get("keep_layers", ())) != list(self.keep_layers):
            raise ConfigError(
                f"init_from keeps layers {self.init_from.get('keep_layers')} but keep_layers={self.keep_layers}: "
                "continue from a student with the same layers"
            )
        if self.train_sentences is not None and self.train_sentences < 1:
            raise ConfigError(f"train_sentences={self.train_sentences}: expected None (all) or a positive count")

    def cache_key(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


def _encoder_layers(model: nn.Module) -> nn.ModuleList:
    layers = bert_encoder_layers(model)
    if layers is None:
        raise ConfigError(
            f"{type(model).__name__} has no encoder.layer ModuleList; make_layer_student needs a BERT-style encoder"
        )
    return layers


def make_layer_student(teacher: nn.Module, keep_layers: Sequence[int]) -> nn.Module:
    """A copy of a BERT-style ``teacher`` keeping only ``keep_layers`` (initialised from those layers)."""
    layers = _encoder_layers(teacher)
    bad = [i for i in keep_layers if not 0 <= i < len(layers)]
    if bad or not keep_layers:
        raise ConfigError(
            f"keep_layers={list(keep_layers)}: the teacher has layers 0..{len(layers) - 1}; pick indices in that range"
        )
    student = copy.deepcopy(teacher)
    student.encoder.layer = nn.ModuleList([copy.deepcopy(layers[i]) for i in keep_layers])
    if hasattr(student, "config"):
        student.config.num_hidden_layers = len(keep_layers)
    for new_idx, layer in enumerate(student.encoder.layer):
        # HF layers carry their index for KV caches; keep it consistent with the new position
        attn = getattr(getattr(layer, "attention", None), "self", None)
        if attn is not None and hasattr(attn, "layer_idx"):
            attn.layer_idx = new_idx
    student.accelkit_details = {"kept_layers": list(keep_layers), "teacher_layers": len(layers)}
    return student.eval()


def rank_layer_subsets(
    teacher: nn.Module, tokenizer: Any, sentences: Sequence[str], k: int, max_length: int = 128
) -> list[tuple[tuple[int, ...], float]]:
    """Every k-layer subset of the teacher ranked by the untrained student's mean embedding cosine
    to the teacher on ``sentences`` (use calibration sentences, never evaluation ones): a cheap,
    data-driven choice of which layers to initialise the student from."""
    import itertools

    n = len(_encoder_layers(teacher))
    if not 1 <= k <= n:
        raise ConfigError(f"k={k}: the teacher has {n} layers; choose 1..{n}")
    target = sentence_embeddings(teacher, tokenizer, sentences, max_length=max_length)
    ranked = []
    for keep in itertools.combinations(range(n), k):
        emb = sentence_embeddings(make_layer_student(teacher, keep), tokenizer, sentences, max_length=max_length)
        ranked.append((keep, float(nn.functional.cosine_similarity(emb, target).mean())))
    return sorted(ranked, key=lambda item: -item[1])


def _length_sorted_batches(tokenizer: Any, sentences: Sequence[str], batch_size: int, max_length: int):
    """(indices, encoded batch) with dynamic padding over length-sorted sentences: little padding, same result."""
    lengths = [len(ids) for ids in tokenizer(list(sentences), truncation=True, max_length=max_length)["input_ids"]]
    order = sorted(range(len(sentences)), key=lambda i: lengths[i])
    batches = []
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        enc = tokenizer([sentences[i] for i in idx], padding="longest", truncation=True,
                        max_length=max_length, return_tensors="pt")
        batches.append((idx, {k: enc[k] for k in ("input_ids", "attention_mask")}))
    return batches


def _embed(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    out = model(**batch)
    hidden = out[0] if isinstance(out, (tuple, list)) else out.last_hidden_state
    return mean_pool(hidden, batch["attention_mask"])


@torch.no_grad()
def sentence_embeddings(
    model: nn.Module, tokenizer: Any, sentences: Sequence[str], batch_size: int = 64, max_length: int = 128
) -> torch.Tensor:
    """Mean-pooled embeddings (N, D) in the sentences' order (computed with length-sorted dynamic padding)."""
    model.eval()
    out: torch.Tensor | None = None
    for idx, batch in _length_sorted_batches(tokenizer, sentences, batch_size, max_length):
        emb = _embed(model, batch)
        if out is None:
            out = emb.new_empty((len(sentences), emb.shape[1]))
        out[torch.tensor(idx)] = emb
    assert out is not None
    return out


def augment_sentences(sentences: Sequence[str], copies: int, seed: int = 0) -> list[str]:
    """``sentences`` plus ``copies`` variants of each: a random span of 40–90% of its words,
    or the sentence joined to another one. Only training inputs change; evaluation data is untouched."""
    import random

    rng = random.Random(seed)
    out = list(sentences)
    for c in range(copies):
        for i, sent in enumerate(sentences):
            words = sent.split()
            if c % 2 == 0 and len(words) > 4:
                n = max(3, int(len(words) * rng.uniform(0.4, 0.9)))
                start = rng.randrange(0, len(words) - n + 1)
                out.append(" ".join(words[start : start + n]))
            else:
                out.append(sent + " " + sentences[(i + rng.randrange(1, len(sentences))) % len(sentences)])
    return out


def distill_sentence_encoder(
    student: nn.Module,
    teacher_embeddings: torch.Tensor,
    tokenizer: Any,
    sentences: Sequence[str],
    config: SentenceDistillConfig | None = None,
    *,
    teacher: nn.Module | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> nn.Module:
    """Train ``student`` so its mean-pooled embeddings of ``sentences`` match ``teacher_embeddings`` (N, D).

    With ``config.token_weight`` > 0 the student's last hidden states also match ``teacher``'s
    token by token (computed once per batch, kept in memory). Batches are length-sorted and
    dynamically padded (training pays only for real tokens), shuffled as whole batches each epoch.
    """
    config = config or SentenceDistillConfig()
    if len(teacher_embeddings) != len(sentences):
        raise ConfigError(
            f"{len(sentences)} sentences but teacher embeddings of shape {tuple(teacher_embeddings.shape)}; "
            "compute the teacher embeddings of exactly these sentences"
        )
    if config.token_weight > 0 and teacher is None:
        raise ConfigError(f"token_weight={config.token_weight} matches hidden states: pass teacher=, or set token_weight=0")
    batches = _length_sorted_batches(tokenizer, sentences, config.batch_size, config.max_length)
    if config.epochs == 0:
        return student.eval()
    token_targets: list[torch.Tensor] = []
    if config.token_weight > 0:
        with torch.no_grad():
            teacher.eval()
            token_targets = [teacher(**b).last_hidden_state for _, b in batches]  # each (B, T, D)
    with torch.no_grad():
        width = _embed(student.eval(), batches[0][1]).shape[-1]
    hidden_loss = HiddenDistillLoss(width, teacher_embeddings.shape[1], HiddenDistillConfig("cosine"))
    params = list(student.parameters()) + list(hidden_loss.parameters())
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.01)
    total = config.epochs * len(batches)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine_factor(s, total))
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    # BERT-style encoders differ between train and eval mode only in dropout (attention dropout
    # reads module.training, so switching the Dropout modules alone would not be enough)
    student.train(config.dropout)
    step = 0
    for _ in range(config.epochs):
        for b in torch.randperm(len(batches), generator=gen).tolist():
            idx, batch = batches[b]
            out = student(**batch)
            hidden = out[0] if isinstance(out, (tuple, list)) else out.last_hidden_state  # (B, T, D)
            emb = mean_pool(hidden, batch["attention_mask"])
            target = teacher_embeddings[torch.tensor(idx)]
            loss = hidden_loss(emb, target)
            if config.mse_weight:
                loss = loss + config.mse_weight * nn.functional.mse_loss(hidden_loss.projection(emb), target)
            if token_targets:
                real = batch["attention_mask"].bool()  # (B, T): padding positions carry no signal
                s_tok, t_tok = hidden_loss.projection(hidden[real]), token_targets[b][real]
                loss = loss + config.token_weight * (
                    nn.functional.mse_loss(s_tok, t_tok) + (1 - nn.functional.cosine_similarity(s_tok, t_tok)).mean()
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if progress is not None:
                progress(step, total)
    return student.eval()
