"""feature-extraction: a plain Hugging Face encoder (``BertModel``, ...) whose token states are
mean-pooled into embeddings and scored as sentence embeddings are."""

from __future__ import annotations

from accelkit.tasks.registry import register_task
from accelkit.tasks.sentence_embedding import SentenceEmbedding

__all__ = ["FeatureExtraction"]


@register_task
class FeatureExtraction(SentenceEmbedding):
    name = "feature-extraction"
    sentence_transformers = False
    architectures = ("Model",)
    fallback = True  # "...Model" only when no architecture names a head a task claims
