"""sentence-embedding: a sentence-transformers folder, its token states pooled (and normalised)
as ``SentenceTransformer.encode`` does; quality is the cosine to the fp32 model's embeddings and
top-10 retrieval agreement."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from accelkit.tasks.base import TaskSpec
from accelkit.tasks.registry import register_task

if TYPE_CHECKING:
    import torch

__all__ = ["SentenceEmbedding", "embedding_quality"]


@register_task
class SentenceEmbedding(TaskSpec):
    name = "sentence-embedding"
    output = "last_hidden_state"
    primary_metric = "cosine_mean"
    method = "encode"
    sentence_transformers = True
    offers = frozenset({"sentence-embedding"})

    def reduce(self, output: torch.Tensor, inputs: dict[str, torch.Tensor], *, pooling: str = "mean",
               width: int = 512) -> torch.Tensor:
        from accelkit.tasks.pooling import pool_tokens

        if output.dim() == 2:  # the model pools itself (a custom output)
            return output
        return pool_tokens(output, inputs["attention_mask"], pooling)

    def quality(self, outputs: torch.Tensor, reference: torch.Tensor,
                labels: Sequence[Any] | None = None) -> dict[str, float]:
        return embedding_quality(outputs, reference)


def embedding_quality(outputs: torch.Tensor, reference: torch.Tensor, k: int = 10) -> dict[str, float]:
    """Cosine to the reference embeddings (mean, min) and top-k retrieval agreement."""
    import torch
    from torch import nn

    a = nn.functional.normalize(outputs.float(), dim=1)
    b = nn.functional.normalize(reference.float(), dim=1)
    cos = (a * b).sum(1)
    k = min(k, len(a) - 1)
    if k < 1:
        agreement = 1.0
    else:
        # each sentence queries all others; agreement = overlap of the top-k neighbour sets
        eye = torch.eye(len(a), dtype=torch.bool)
        top_a = (a @ a.T).masked_fill(eye, -2).topk(k, dim=1).indices
        top_b = (b @ b.T).masked_fill(eye, -2).topk(k, dim=1).indices
        hits = (top_a.unsqueeze(2) == top_b.unsqueeze(1)).any(2).float().sum(1)
        agreement = float((hits / k).mean())
    return {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()), "top10_agreement": agreement}
