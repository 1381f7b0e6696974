"""The in-process engine: one worker, every block in turn, with all the threads it is given."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from accelkit.batch_run.block_worker import BlockWorker
from accelkit.batch_run.blocks import Block

__all__ = ["run_local"]


def run_local(worker_args: dict[str, Any], blocks: list[Block], on_result: Callable[[dict], None]) -> None:
    """Run ``blocks`` through one BlockWorker built from ``worker_args``, reporting each result."""
    worker = BlockWorker(**worker_args)
    for block in blocks:
        on_result(worker.run(block))
