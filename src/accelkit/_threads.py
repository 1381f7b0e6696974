"""One way to run a block with another torch thread count: set it, restore the old one after,
even when the block raises (benchmarks, training benches and tiny fits all use it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["available_cpus", "thread_count"]


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@contextmanager
def thread_count(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``, restoring the old count after (None: leave it)."""
    if n is None:
        yield
        return
    if n < 1:
        raise ValueError(f"threads={n}: expected a positive integer")
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
