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
    return pickle.loads(fh.read(size))  # our own parent's payload, not a user file


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(reply_fd: int) -> None:
    import torch

    from accelkit.train.batch_finder import _tile, _train_steps
    from accelkit.train.precision import make_grad_scaler

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
            inputs = _tile(example_inputs, batch_size, device)
            targets = _tile(example_targets, batch_size, device)
            rate = _train_steps(model, optimizer, scaler, inputs, targets, loss_fn, precision, "cpu", steps)
            del inputs, targets
            # ru_maxrss is the lifetime peak; probes grow in size, so it is this probe's peak
            send(outbox, ("ok", rate, _peak_rss_mb()))
        except (RuntimeError, MemoryError) as exc:
            send(outbox, ("error", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"))


if __name__ == "__main__":
    main(int(sys.argv[1]))
