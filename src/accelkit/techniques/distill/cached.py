"""Trained students and teacher embeddings cached on disk by config and data, so a distilled
sentence encoder is trained once per machine and reused by every variant that needs it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from accelkit.techniques.distill.sentence import (
    SentenceDistillConfig,
    augment_sentences,
    distill_sentence_encoder,
    make_layer_student,
    sentence_embeddings,
)
from accelkit.workloads.base import cache_dir

__all__ = ["cached_sentence_student", "cached_teacher_embeddings"]


def _cached_tensor(path: Path, make: Callable[[], torch.Tensor]) -> torch.Tensor:
    from safetensors.torch import load_file, save_file

    if path.exists():
        try:
            return load_file(str(path))["tensor"]
        except Exception:  # corrupt entry: recompute
            path.unlink(missing_ok=True)
    tensor = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"tensor": tensor.contiguous()}, str(tmp))
    tmp.replace(path)
    return tensor


def cached_teacher_embeddings(workload: Any, teacher: nn.Module, sentences: Sequence[str], max_length: int) -> torch.Tensor:
    """The teacher's embeddings of ``sentences`` (N, D), computed once per sentence list and
    length and cached under ``cache_dir()/distill`` (shared by every student trained on them)."""
    digest = hashlib.sha256("\n".join(sentences).encode()).hexdigest()[:12]
    return _cached_tensor(
        cache_dir() / "distill" / f"{workload.name}-teacher-emb-{digest}-L{max_length}.safetensors",
        lambda: sentence_embeddings(teacher, workload.tokenizer, sentences, max_length=max_length),
    )


def cached_sentence_student(workload: Any, teacher: nn.Module, config: SentenceDistillConfig | None = None) -> nn.Module:
    """The distilled student for a sentence-embedding workload (minilm), trained once per config and cached.

    Trains on ``workload.calib_data()`` plus, with ``config.extra_sentences``, docstring
    sentences (never the evaluation sentences); with ``config.init_from`` it starts from that
    config's student instead of the teacher's layers. Teacher embeddings and student weights live
    under ``cache_dir()/distill``.
    """
    from safetensors.torch import load_file

    from accelkit.workloads._weights import save_state_atomic

    config = config or SentenceDistillConfig()
    student = make_layer_student(teacher, config.keep_layers)
    key = config.cache_key()
    weights = cache_dir() / "distill" / f"{workload.name}-student-{key}.safetensors"
    if weights.exists():
        try:
            student.load_state_dict(load_file(str(weights)))
            student.accelkit_details.update({"config": config.to_dict(), "cached": True})
            return student.eval()
        except Exception:
            weights.unlink(missing_ok=True)
    from accelkit.workloads.minilm import extra_sentences

    if config.init_from is not None:  # continue from that student (trained first if not cached)
        start = cached_sentence_student(workload, teacher, SentenceDistillConfig.from_dict(config.init_from))
        student.load_state_dict(start.state_dict())
    sentences = list(workload.calib_data(config.train_sentences)) + list(extra_sentences(config.extra_sentences))
    sentences = augment_sentences(sentences, config.augment_copies, config.seed)
    targets = cached_teacher_embeddings(workload, teacher, sentences, config.max_length)
    student = distill_sentence_encoder(student, targets, workload.tokenizer, sentences, config, teacher=teacher)
    save_state_atomic(student, weights)
    student.accelkit_details.update({"config": config.to_dict(), "cached": False})
    return student
