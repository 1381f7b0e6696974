"""Exit heads: a fixed pooling of a block's output and a small trained projection that predicts
the model's final output (logits, per-token logits or the pooled embedding)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from accelkit.tasks.pooling import mean_pool

__all__ = ["ExitHead"]


class ExitHead(nn.Module):
    """A fixed pooling then a small trained projection.

    ``classifier``: conv features (C, H, W) are average-pooled to ≤ pool×pool and flattened,
    token features (T, D) mean-pooled; a linear layer gives logits. ``token-classifier``
    (a language model): logits per token, no pooling; a row exits only when all its tokens
    meet the criterion. ``embedding``: token
    features are mean-pooled and a D×D linear map (initialised to identity) predicts the
    model's final pooled embedding.
    """

    def __init__(self, kind: str, feature_shape: Sequence[int], out_features: int, pool: int = 4, hidden: int = 0):
        super().__init__()
        self.spec = {
            "kind": kind, "feature_shape": list(feature_shape), "out_features": out_features,
            "pool": pool, "hidden": hidden,
        }
        self.kind = kind
        self.pool_hw = None
        if len(feature_shape) == 3:  # (C, H, W)
            c, h, w = feature_shape
            self.pool_hw = (min(pool, h), min(pool, w))
            in_features = c * self.pool_hw[0] * self.pool_hw[1]
        else:
            in_features = feature_shape[-1]
        if hidden:
            self.proj = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, out_features))
        else:
            self.proj = nn.Linear(in_features, out_features)
            if kind == "embedding" and in_features == out_features:
                with torch.no_grad():
                    self.proj.weight.copy_(torch.eye(out_features))
                    self.proj.bias.zero_()

    def pool(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() == 4:  # (B, C, H, W)
            if tuple(x.shape[2:]) != self.pool_hw:
                x = nn.functional.adaptive_avg_pool2d(x, self.pool_hw)
            return x.flatten(1)
        if x.dim() == 3 and self.kind != "token-classifier":  # (B, T, D) → (B, D)
            return mean_pool(x, mask)
        return x  # token-classifier: one prediction per token, (B, T, D)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.proj(self.pool(x, mask))
