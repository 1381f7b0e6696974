"""Picklable losses that misbehave inside a batch-finder probe process (imported by the probe)."""

from __future__ import annotations

import os
import struct
import sys
import time

import torch


class LossThatRaises:
    """Fails at every size with an error that has nothing to do with memory."""

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise ValueError("labels out of range")


class LossThatDiesMidReply:
    """Above ``limit`` rows: write half a reply frame to the probe's channel, then exit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape[0] > self.limit:
            os.write(int(sys.argv[1]), struct.pack("<Q", 100) + b"half")
            os._exit(3)
        return torch.nn.functional.cross_entropy(logits, target)


class LossThatSleeps:
    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        time.sleep(60)
        return torch.nn.functional.cross_entropy(logits, target)
