"""The batch-size finder's CPU probe process: ``python -m accelkit.train._probe_worker FD``.

Started with subprocess (not multiprocessing), so the caller's ``__main__`` is never
re-imported. Reads one pickled payload then batch sizes from stdin; writes pickled
replies to file descriptor FD, so prints from the model cannot corrupt the channel.
"""

from __future__ import annotations

import os
import pickle
import resource
import struct
import sys
from typing import Any, BinaryIO


def send(fh: BinaryIO, obj: Any) -> None:
    data = pickle.dumps(obj)
    fh.write(struct.pack("<Q", len(data)) + data)
    fh.flush()


def recv(fh: BinaryIO) -> Any:
    header = fh.read(8)
    if len(header) < 8:
        raise EOFError("channel closed")
    (size,) = struct.unpack("<Q", header)
    body = fh.read(size)
    if len(body) < size:  # the writer died mid-message
        raise EOFError(f"channel closed mid-message ({len(body)} of {size} bytes)")
    return pickle.loads(body)  # our own parent's payload, not a user file


def _is_oom_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "out of memory" in text or "can't allocate memory" in text


def _die_with_parent(parent_pid: int | None) -> None:
    """Linux: get SIGKILL when the parent dies (a probe must not outlive a killed finder)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent_pid is not None and os.getppid() != parent_pid:  # it died before prctl took effect
        os._exit(1)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(reply_fd: int, parent_pid: int | None = None) -> None:
    _die_with_parent(parent_pid)
    import torch

    from accelkit.train.precision import make_grad_scaler
    from accelkit.train.probe_steps import tile_batch, timed_train_steps

    inbox = sys.stdin.buffer
    outbox = os.fdopen(reply_fd, "wb")
    model, example_inputs, example_targets, loss_fn, precision, steps = recv(inbox)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)  # lr=0: probes leave weights alone
    scaler = make_grad_scaler(precision, "cpu")
    send(outbox, ("ready", _peak_rss_mb()))
    device = torch.device("cpu")
    while True:
        try:
            batch_size = recv(inbox)
        except EOFError:
            return
        if batch_size is None:
            return
        try:
            inputs = tile_batch(example_inputs, batch_size, device)
            targets = tile_batch(example_targets, batch_size, device)
            rate = timed_train_steps(model, optimizer, scaler, inputs, targets, loss_fn, precision, "cpu", steps)
            del inputs, targets
            # ru_maxrss is the lifetime peak; probes grow in size, so it is this probe's peak
            send(outbox, ("ok", rate, _peak_rss_mb()))
        except Exception as exc:  # noqa: BLE001 - every failure is reported, and said whether it is OOM
            first = str(exc).splitlines()[0][:200] if str(exc) else ""
            send(outbox, ("oom" if _is_oom_error(exc) else "error", f"{type(exc).__name__}: {first}"))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else None)
