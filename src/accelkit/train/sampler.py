"""A DistributedSampler that can start mid-epoch, so a resumed run sees the same batches.

Buys: exact resume and per-epoch reshuffling that is identical for 1 or N processes at the
same global batch. Costs: nothing; the permutation is torch.randperm(seed + epoch) as upstream.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import Dataset, DistributedSampler

__all__ = ["ResumableDistributedSampler"]


class ResumableDistributedSampler(DistributedSampler):
    """``DistributedSampler`` (seed + epoch permutation, rank ``r`` takes every N-th index)
    that skips the first ``start_index`` indices of this rank's share for the current epoch."""

    def __init__(self, dataset: Dataset, *, num_replicas: int, rank: int, shuffle: bool, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.start_index = 0

    def set_start_index(self, start_index: int) -> None:
        """Skip this many of this rank's indices in the current epoch (reset by the trainer)."""
        self.start_index = start_index

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start_index :])

    def __len__(self) -> int:
        return self.num_samples - self.start_index

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "start_index": self.start_index, "seed": self.seed}
