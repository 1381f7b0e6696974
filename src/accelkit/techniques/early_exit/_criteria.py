"""Per-row scores the exit criteria compare to a threshold (confidence, entropy, agreement of
consecutive heads) and how close an exit's output is to the reference."""

from __future__ import annotations

import math

import torch
from torch import nn


def _row_confidence(logits: torch.Tensor) -> torch.Tensor:
    """Max softmax per row; for per-token logits (B, T, V) the least confident token."""
    conf = logits.float().softmax(-1).amax(-1)
    return conf.amin(-1) if conf.dim() == 2 else conf


def _row_entropy(logits: torch.Tensor) -> torch.Tensor:
    ent = _normalized_entropy(logits)
    return ent.amax(-1) if ent.dim() == 2 else ent


def _same_prediction(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    same = a.argmax(-1) == b.argmax(-1)
    return same.all(-1) if same.dim() == 2 else same


def _normalized_entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = logits.float().log_softmax(-1)
    return -(logp.exp() * logp).sum(-1) / math.log(logits.shape[-1])


def _row_quality(mode: str, out: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per row: cosine to the reference (embeddings) or the fraction of predictions that agree."""
    if mode == "embedding":
        return nn.functional.cosine_similarity(out, reference, dim=-1).double()
    same = (out.argmax(-1) == reference.argmax(-1)).double()
    return same.mean(-1) if same.dim() == 2 else same


def _agreement(mode: str, out: torch.Tensor, reference: torch.Tensor) -> float:
    if mode == "embedding":
        return float(nn.functional.cosine_similarity(out, reference, dim=-1).mean())
    return float((out.argmax(-1) == reference.argmax(-1)).float().mean())
