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


class TinyImageCNN(nn.Module):
    """(B, 3, H, W) -> ``classes`` logits: a user's own image classifier (``module:function`` models)."""

    def __init__(self, classes: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


def image_cnn() -> dict:
    torch.manual_seed(0)
    return {"model": TinyImageCNN(2), "image_size": 16}


def image_cnn_three_classes() -> nn.Module:
    return TinyImageCNN(3)
