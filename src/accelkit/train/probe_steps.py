"""One batch-size probe: a few real training steps on a batch tiled to size b, timed.

Shared by the finder (CUDA probes in-process) and its CPU probe worker process.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from accelkit.train.precision import autocast_context

__all__ = ["first_dim", "tile_batch", "timed_train_steps"]


def tile_batch(example: Any, batch_size: int, device: torch.device) -> Any:
    """Repeat a batch along dim 0 to ``batch_size`` rows (so probes need no data loader)."""
    if isinstance(example, torch.Tensor):
        reps = -(-batch_size // example.shape[0])
        tiled = example.repeat(reps, *([1] * (example.dim() - 1)))[:batch_size]
        return tiled.to(device)
    if isinstance(example, (list, tuple)):
        return type(example)(tile_batch(e, batch_size, device) for e in example)
    if isinstance(example, dict):
        return {k: tile_batch(v, batch_size, device) for k, v in example.items()}
    return example


def timed_train_steps(model, optimizer, scaler, inputs, targets, loss_fn, precision, device_type, steps) -> float:
    """Run 1 warm-up + ``steps`` optimizer steps; return samples/s of the timed ones."""
    batch = first_dim(inputs)
    elapsed = 0.0
    for i in range(steps + 1):
        if device_type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast_context(precision, device_type):
            loss = loss_fn(model(inputs), targets)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device_type == "cuda":
            torch.cuda.synchronize()
        if i:
            elapsed += time.perf_counter() - start
    return batch * steps / elapsed if elapsed > 0 else float("inf")


def first_dim(obj: Any) -> int:
    while isinstance(obj, (list, tuple)):
        obj = obj[0]
    if isinstance(obj, dict):
        obj = next(iter(obj.values()))
    return int(obj.shape[0])
