"""Knowledge distillation: train a smaller student to imitate a trained teacher.

Buys a model with fewer layers/channels (real speed on any kernel) that keeps most of
the teacher's quality; costs a training run (minutes here; the teacher's outputs are
computed once and cached, and trained students are cached by config).

Layout: ``losses`` (logit KD, hidden-state matching), ``classifier`` (classifier KD),
``sentence`` (sentence-encoder students), ``cached`` (students and teacher embeddings on disk).
"""

from __future__ import annotations

from accelkit.techniques.distill.cached import cached_sentence_student, cached_teacher_embeddings
from accelkit.techniques.distill.classifier import (
    ClassifierDistillConfig,
    distill_classifier,
    shift_augment,
)
from accelkit.techniques.distill.losses import (
    HiddenDistillConfig,
    HiddenDistillLoss,
    LogitKDConfig,
    logit_kd_loss,
)

# _length_sorted_batches is imported from this path by head pruning: kept importable
from accelkit.techniques.distill.sentence import (  # noqa: F401
    SentenceDistillConfig,
    _length_sorted_batches,
    augment_sentences,
    distill_sentence_encoder,
    make_layer_student,
    rank_layer_subsets,
    sentence_embeddings,
)

__all__ = [
    "ClassifierDistillConfig",
    "HiddenDistillConfig",
    "HiddenDistillLoss",
    "LogitKDConfig",
    "SentenceDistillConfig",
    "augment_sentences",
    "cached_sentence_student",
    "cached_teacher_embeddings",
    "distill_classifier",
    "distill_sentence_encoder",
    "logit_kd_loss",
    "make_layer_student",
    "rank_layer_subsets",
    "sentence_embeddings",
    "shift_augment",
]
