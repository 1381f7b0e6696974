"""Mask-aware mean pooling of token states into one vector per row: the pooling of
sentence-transformers' MiniLM, shared by the workload, distillation and the exit heads."""

from __future__ import annotations

import torch

__all__ = ["mean_pool"]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the tokens the attention mask keeps: hidden (B, T, D), mask (B, T) → (B, D).

    ``mask=None``: every token counts (a plain mean over T).
    """
    if mask is None:
        return hidden.mean(1)
    m = mask.unsqueeze(-1).to(hidden.dtype)
    # the clamp keeps an all-padding row at 0 instead of NaN
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
