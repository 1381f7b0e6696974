"""One way to run a block with another torch thread count: set it, restore the old one after,
even when the block raises (benchmarks, training benches and tiny fits all use it); and the count
torch keeps beside a runtime that computes on threads of its own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch

__all__ = ["available_cpus", "thread_count", "torch_threads_beside"]


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


def torch_threads_beside(model: Any) -> AbstractContextManager[None]:
    """One torch thread while ``model`` computes outside torch (``computes_outside_torch``: OpenVINO,
    ONNX Runtime), else no change. The torch work between its calls is small (pooling, casts), and
    torch's OpenMP workers spin-wait after each op on the cores the runtime's own threads need for
    the next batch: measured on minilm with OpenVINO (2 cores), 7% of a pass."""
    return thread_count(1) if getattr(model, "computes_outside_torch", False) else nullcontext()
