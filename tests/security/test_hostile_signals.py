"""Signals to long commands end their child processes too, and the exit code is 128 + signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

import accelkit

SRC = os.path.dirname(os.path.dirname(accelkit.__file__))  # the tree under test, for the child


def _wait_for(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signal_to_train_nproc_2_ends_torchrun_and_workers(tmp_path, sig):
    env = {**os.environ, "PYTHONPATH": os.path.abspath(SRC), "OMP_NUM_THREADS": "1"}
    parent = subprocess.Popen(
        [sys.executable, "-m", "accelkit", "train", "--workload", "digits", "--nproc", "2", "--max-steps", "100000",
         "--no-progress", "--micro-batch", "8", "--out", str(tmp_path / "run")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    proc = psutil.Process(parent.pid)
    children: list[psutil.Process] = []

    def workers_running() -> bool:
        children[:] = proc.children(recursive=True)
        return len(children) >= 3  # torchrun + 2 workers

    try:
        assert _wait_for(workers_running, 120), "torchrun and its workers did not start"
        parent.send_signal(sig)
        assert parent.wait(timeout=60) == 128 + sig
        gone, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, f"left running: {[p.pid for p in alive]}"
    finally:
        for p in [proc, *children]:
            try:
                p.kill()
            except psutil.Error:
                pass
