"""The in-process engine: one worker, every block in turn, with all the threads it is given."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from accelkit._threads import thread_count
from accelkit.batch_run.block_worker import BlockWorker
from accelkit.batch_run.blocks import Block

__all__ = ["run_local"]


def run_local(worker_args: dict[str, Any], blocks: list[Block], on_result: Callable[[dict], None]) -> None:
    """Run ``blocks`` through one BlockWorker built from ``worker_args``, reporting each result;
    the caller's torch thread count is restored after."""
    with thread_count(torch.get_num_threads()):  # the worker sets its own; this puts the caller's back
        worker = BlockWorker(**worker_args)
        for block in blocks:
            on_result(worker.run(block))
