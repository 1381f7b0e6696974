"""Multi-process training through torch's own launcher (``torch.distributed.run``, i.e. torchrun).

Buys: data parallelism over N processes (gloo on CPU, NCCL on GPUs) with elastic restarts;
the training loop joins the group from torchrun's environment. Costs: one gradient
all-reduce per optimizer step (none during accumulation: DDP ``no_sync``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from accelkit._threads import available_cpus
from accelkit.config import Config
from accelkit.errors import ConfigError

__all__ = ["LaunchConfig", "check_nproc", "launch", "torchrun_command"]


@dataclass
class LaunchConfig(Config):
    """torchrun's flags. One node by default (``--standalone``); for several nodes give
    ``nnodes``, ``node_rank`` or ``rdzv_endpoint`` exactly as torchrun takes them."""

    nproc_per_node: int = 1
    nnodes: str = "1"  # "2" or elastic "1:4"
    node_rank: int | None = None
    rdzv_backend: str = "c10d"
    rdzv_endpoint: str | None = None  # host:port of the rendezvous
    rdzv_id: str | None = None
    max_restarts: int = 0  # torchrun restarts the whole worker group this many times
    monitor_interval: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.nproc_per_node, bool) or not isinstance(self.nproc_per_node, int) or self.nproc_per_node < 1:
            raise ConfigError(f"nproc_per_node={self.nproc_per_node!r}: expected an integer >= 1")
        if self.max_restarts < 0:
            raise ConfigError(f"max_restarts={self.max_restarts!r}: expected an integer >= 0")
        self.nnodes = str(self.nnodes)
        if self.nnodes != "1" and not self.rdzv_endpoint:
            raise ConfigError(f"nnodes={self.nnodes!r} needs rdzv_endpoint=host:port, the rendezvous every node joins")

    @property
    def standalone(self) -> bool:
        return self.nnodes == "1" and self.rdzv_endpoint is None


def check_nproc(nproc: int, device_type: str) -> None:
    """ConfigError when ``nproc`` processes per node exceed what this node has: its usable CPU cores
    (gloo on CPU: a process per core, more only thrash) or, on CUDA, its GPUs (one each)."""
    if device_type == "cuda":
        import torch

        have, what = torch.cuda.device_count(), "CUDA GPUs"
    else:
        have = available_cpus()
        what = "CPU cores"
    if nproc > have:
        raise ConfigError(f"--nproc {nproc} is more than this machine's {have} {what} (one process each); "
                          f"pass --nproc {have} or less")


def torchrun_command(launch_config: LaunchConfig, target: list[str], *, module: bool = False) -> list[str]:
    """The ``python -m torch.distributed.run ...`` argv that runs ``target`` (a script and its
    arguments, or with ``module=True`` a module name and its arguments) in every worker."""
    lc = launch_config
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(lc.nproc_per_node),
           "--max-restarts", str(lc.max_restarts)]
    if lc.standalone:
        cmd.append("--standalone")
    else:
        cmd += ["--nnodes", lc.nnodes, "--rdzv-backend", lc.rdzv_backend, "--rdzv-endpoint", lc.rdzv_endpoint]
        if lc.rdzv_id:
            cmd += ["--rdzv-id", lc.rdzv_id]
        if lc.node_rank is not None:
            cmd += ["--node-rank", str(lc.node_rank)]
    if lc.monitor_interval is not None:
        cmd += ["--monitor-interval", str(lc.monitor_interval)]
    if module:
        cmd.append("-m")
    return cmd + list(target)


def launch(launch_config: LaunchConfig, target: list[str], *, module: bool = False, env: dict[str, str] | None = None,
           timeout_s: float | None = None) -> int:
    """Run ``target`` under torchrun and wait; returns torchrun's exit code (0: all workers succeeded).

    torchrun and its workers run in their own process group, so a timeout or Ctrl-C stops all
    of them, never leaving orphaned workers. After ``timeout_s`` it raises TimeoutError.
    SIGTERM, SIGHUP or SIGINT to this process (a scheduler's kill, a closed terminal, Ctrl-C)
    is passed to the group, which is waited for; then it returns 128 + the signal's number.
    """
    proc = subprocess.Popen(torchrun_command(launch_config, target, module=module), env=env, start_new_session=True)
    with _signals_raise() as received:
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            _stop_group(proc)
            raise TimeoutError(f"torchrun did not finish in {timeout_s:.0f} s; it and its workers were stopped") from exc
        except (KeyboardInterrupt, _Signalled):
            signum = received[-1] if received else signal.SIGINT
            _stop_group(proc, first=signum)
            return 128 + int(signum)


class _Signalled(BaseException):
    """Raised in the main thread by a handled signal, so the wait above unwinds to the cleanup."""


@contextlib.contextmanager
def _signals_raise() -> Iterator[list[int]]:
    # the default action of SIGTERM/SIGHUP ends this process at once and leaves torchrun (in its
    # own session) and its workers running, re-parented to init
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # handlers live in the main thread only
        yield received
        return

    def handler(signum: int, frame: Any) -> None:
        received.append(signum)
        raise _Signalled(signum)

    sigs = [signal.SIGTERM, signal.SIGINT] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    previous = {sig: signal.signal(sig, handler) for sig in sigs}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _stop_group(proc: subprocess.Popen, first: int = signal.SIGTERM) -> None:
    # torchrun's agent may start workers outside its process group: remember every descendant
    # now, and end any still running once the group is gone
    try:
        import psutil

        descendants = psutil.Process(proc.pid).children(recursive=True)
    except Exception:  # psutil missing or torchrun already gone: the group kill is all there is
        descendants = []
    try:
        _stop_process_group(proc, first)
    finally:
        for child in descendants:
            with contextlib.suppress(Exception):
                child.kill()


def _stop_process_group(proc: subprocess.Popen, first: int) -> None:
    for sig, grace in ((first, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
        except (subprocess.TimeoutExpired, _Signalled):  # a second signal while waiting: go on to SIGKILL
            continue
        # torchrun is gone; its workers may still be exiting: end whatever is left of the group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return
