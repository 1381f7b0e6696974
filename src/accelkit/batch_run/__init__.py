"""Run a shipped model folder over a corpus too big for memory, on Ray Data or in-process, with
nothing lost and nothing twice (``accelkit run``, ``accelkit.run_batch``)."""

from accelkit.batch_run.run import ENGINES, RunConfig, run_batch

__all__ = ["ENGINES", "RunConfig", "run_batch"]
