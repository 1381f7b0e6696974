"""Small models for the training tests (a uniquely named module: conftest is not importable)."""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """(B, 1, 8, 8) -> 10 logits; dropout so that exact resume must restore the RNG."""

    def __init__(self, width: int = 8, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(width * 64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(torch.relu(self.conv(x)).flatten(1)))


def make_model(seed: int = 0, dropout: float = 0.0) -> SmallCNN:
    torch.manual_seed(seed)
    return SmallCNN(dropout=dropout)


class LossThatIsKilledAbove:
    """A picklable loss that SIGKILLs its process above a batch size: what the Linux OOM killer does."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape[0] > self.limit:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        return nn.functional.cross_entropy(logits, target)
