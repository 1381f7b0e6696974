"""A DistributedSampler that can start mid-epoch, so a resumed run sees the same batches.

Buys: exact resume and per-epoch reshuffling that is identical for 1 or N processes at the
same global batch. Costs: nothing; the permutation is torch.randperm(seed + epoch) as upstream.
Given item lengths it groups them: each run of ``group_size`` shuffled indices is sorted longest
first, so a batch pads to a similar length (the transformers Trainer's ``group_by_length``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import Dataset, DistributedSampler

__all__ = ["ResumableDistributedSampler", "length_group_size", "sorted_within_groups"]


def length_group_size(items: int, batch_size: int) -> int:
    """Items per length-sorted group, as the transformers Trainer sizes its mega-batches: 50
    batches, or fewer so the data holds at least 4 groups. One group over a small data set would
    sort the whole epoch longest-first: the first steps would all be the longest texts."""
    return batch_size * max(1, min(items // (batch_size * 4), 50))


def sorted_within_groups(indices: list[int], lengths: list[int], group_size: int) -> list[int]:
    """``indices`` with each run of ``group_size`` sorted longest first (stable: ties keep the
    shuffled order), so a batch cut from a run pads to a similar length."""
    return [i for start in range(0, len(indices), group_size)
            for i in sorted(indices[start : start + group_size], key=lambda i: -lengths[i])]


class ResumableDistributedSampler(DistributedSampler):
    """``DistributedSampler`` (seed + epoch permutation, rank ``r`` takes every N-th index)
    that skips the first ``start_index`` indices of this rank's share for the current epoch."""

    def __init__(self, dataset: Dataset, *, num_replicas: int, rank: int, shuffle: bool, seed: int,
                 lengths: list[int] | None = None, group_size: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.start_index = 0
        self.lengths = lengths
        self.group_size = group_size

    def set_start_index(self, start_index: int) -> None:
        """Skip this many of this rank's indices in the current epoch (reset by the trainer)."""
        self.start_index = start_index

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        if self.lengths is not None and self.group_size > 1:
            indices = sorted_within_groups(indices, self.lengths, self.group_size)
        return iter(indices[self.start_index :])

    def __len__(self) -> int:
        return self.num_samples - self.start_index

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "start_index": self.start_index, "seed": self.seed}
