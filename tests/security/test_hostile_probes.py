"""Batch-finder probes: reported as what happened to them, and never outliving their parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest
import torch
from hostile_probe_losses import LossThatDiesMidReply, LossThatRaises

import accelkit
from accelkit.train.batch_finder import BatchSizeError, find_max_batch_size

MODEL = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4))
X, Y = torch.rand(4, 16), torch.tensor([0, 1, 2, 3])


def test_probe_error_that_is_not_out_of_memory_is_reported_as_what_it_is():
    with pytest.raises(BatchSizeError, match="ValueError: labels out of range, which is not out of memory"):
        find_max_batch_size(MODEL, X, Y, LossThatRaises(), device="cpu", max_batch_size=8, steps=1)


def test_probe_that_dies_mid_reply_is_reported_with_its_exit_code():
    result = find_max_batch_size(MODEL, X, Y, LossThatDiesMidReply(2), device="cpu", max_batch_size=8, steps=1,
                                 patience=100)
    dead = result.curve[-1]
    assert dead.batch_size == 4 and not dead.fits
    assert "exited with code 3" in dead.error and "out of memory" not in dead.error
    assert result.batch_size <= 2 and result.verified.fits


def test_probe_is_killed_with_its_parent(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import torch
        from hostile_probe_losses import LossThatSleeps
        from accelkit.train.batch_finder import _CPUProber
        p = _CPUProber(torch.nn.Linear(16, 4), torch.rand(2, 16), torch.tensor([0, 1]), LossThatSleeps(), "fp32", 1)
        print(p._proc.pid, flush=True)
        p.probe(2)
    """))
    src = os.path.dirname(os.path.dirname(accelkit.__file__))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": src})
    probe = psutil.Process(int(parent.stdout.readline()))
    try:
        time.sleep(1.0)  # the probe is now inside the 60 s loss
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        probe.wait(timeout=10)  # psutil.TimeoutExpired if it outlived its parent
    finally:
        if probe.is_running():
            probe.kill()
