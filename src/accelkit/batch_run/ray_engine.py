"""The Ray Data engine: the blocks as a dataset of one row each, ``map_batches`` with a callable
class that loads the model folder once per actor, on an ``ActorPoolStrategy`` sized to the
cluster's CPUs (each actor with its share of threads). Actors write the parts themselves; a block
retried after a killed actor replaces its own part, so a retry never adds rows."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
from collections.abc import Callable
from typing import Any

import numpy as np

from accelkit.batch_run.block_worker import BlockWorker
from accelkit.batch_run.blocks import Block
from accelkit.errors import ConfigError, MissingDependencyError

__all__ = ["RayBlockWorker", "cluster_cpus", "connect", "ray_available", "require_ray", "run_ray"]


def ray_available() -> bool:
    from accelkit._lazy import is_available

    return is_available("ray") and is_available("ray.data")


def require_ray() -> None:
    """MissingDependencyError, with the fix, when Ray Data cannot be imported."""
    if not ray_available():
        raise MissingDependencyError("--engine ray needs Ray Data, which is not installed; pip install "
                                     "'ray[data]>=2.40,<3', or pass --engine local")


def connect(address: str | None, cpus: int) -> bool:
    """Join the Ray cluster at ``address``, or start a local one with ``cpus`` CPUs, quietly (no
    dashboard, workers' logs kept in Ray's session folder); True when it was started here."""
    require_ray()
    import ray

    if address:
        _check_reachable(address)
    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(num_cpus=cpus, **quiet)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        where = f"at {address}" if address else "locally"
        raise ConfigError(f"Ray is not reachable {where} ({' '.join(str(exc).split())[:200]}); start a cluster "
                          "with `ray start --head` and pass its address, or drop --address") from exc
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # accelkit draws its own progress line
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    return True


def _check_reachable(address: str) -> None:
    """ConfigError at once when nothing listens at ``host:port`` (ray.init would retry for minutes);
    "auto" and addresses without a port are left to Ray."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise ConfigError(f"Ray is not reachable at {address} ({exc.strerror or exc}); start a cluster with "
                          "`ray start --head` and pass its address, or drop --address") from None


def cluster_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


class RayBlockWorker:
    """The callable class of ``map_batches``: one BlockWorker per actor, one block per batch."""

    def __init__(self, worker_args: dict[str, Any]) -> None:
        self.worker = BlockWorker(**worker_args)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = [self.worker.run(Block(**json.loads(spec))) for spec in batch["block"]]
        return {"result": np.array([json.dumps(r) for r in results], dtype=object)}


def run_ray(worker_args: dict[str, Any], blocks: list[Block], on_result: Callable[[dict], None], *,
            actors: int, threads: int) -> None:
    """Run ``blocks`` on ``actors`` Ray actors of ``threads`` CPUs each, reporting each result as
    its block finishes (in any order)."""
    import ray.data

    # one dataset block per input block: the actor pool hands out dataset blocks, so fewer would
    # leave actors idle
    specs = [{"block": json.dumps(dataclasses.asdict(b))} for b in blocks]
    ds = ray.data.from_items(specs, override_num_blocks=len(specs))
    # Ray Data restarts a killed actor and retries its block by default (max_restarts=-1)
    out = ds.map_batches(RayBlockWorker, fn_constructor_kwargs={"worker_args": worker_args}, batch_size=1,
                         compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=threads)
    for row in out.iter_rows():
        on_result(json.loads(row["result"]))
