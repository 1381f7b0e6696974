"""Token states pooled into one vector per row, as sentence-transformers' Pooling does: mask-aware
mean (MiniLM's pooling, shared by the embedding tasks, distillation and the exit heads), CLS, max
and mean over the square root of the length."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads when a function runs: listing tasks (the CLI's --task help) stays light
    import torch

__all__ = ["POOLING_MODES", "mean_pool", "pool_tokens"]

POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len")


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the tokens the attention mask keeps: hidden (B, T, D), mask (B, T) → (B, D).

    ``mask=None``: every token counts (a plain mean over T).
    """
    if mask is None:
        return hidden.mean(1)
    m = mask.unsqueeze(-1).to(hidden.dtype)
    # the clamp keeps an all-padding row at 0 instead of NaN
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def pool_tokens(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Token states (B, T, D) → one vector per row by ``mode`` (one of ``POOLING_MODES``)."""
    import torch

    if mode == "mean":
        return mean_pool(hidden, mask)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        return hidden.masked_fill(~mask.bool().unsqueeze(-1), torch.finfo(hidden.dtype).min).amax(1)
    summed = (hidden * mask.unsqueeze(-1).to(hidden.dtype)).sum(1)  # mean_sqrt_len
    return summed / mask.sum(1, keepdim=True).to(hidden.dtype).clamp(min=1).sqrt()
