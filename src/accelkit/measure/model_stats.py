"""Static and per-forward facts about a model: parameters, serialized size, FLOPs, peak memory."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable

import torch
from torch import nn

from accelkit._threads import thread_count  # re-exported: measurements pin threads with it

__all__ = [
    "compare_architectures",
    "count_parameters",
    "count_flops",
    "peak_memory_mb",
    "serialized_size_mb",
    "thread_count",
]


def count_parameters(model: nn.Module) -> int:
    """Number of parameter elements (packed/quantized weights count as their float shape)."""
    total = sum(p.numel() for p in model.parameters())
    if total == 0:  # quantized modules keep weights out of .parameters()
        total = sum(t.numel() for t in model.state_dict().values() if isinstance(t, torch.Tensor))
    return total


def serialized_size_mb(model: nn.Module | object) -> float | None:
    """Bytes of ``torch.save(state_dict)`` in MB; None for things that have no state dict."""
    state_dict = getattr(model, "state_dict", None)
    if state_dict is None:
        size = getattr(model, "serialized_size_bytes", None)
        return size / 1e6 if size else None
    buf = io.BytesIO()
    torch.save(state_dict(), buf)
    return buf.tell() / 1e6


def count_flops(fn: Callable[[], object]) -> int | None:
    """FLOPs of one call of ``fn`` (one forward), counted by torch.utils.flop_counter.

    Returns None when the call cannot be traced by the counter (e.g. an ONNX session).
    """
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            fn()
    except Exception:
        return None
    return int(counter.get_total_flops())


def _rss_bytes() -> int:
    import psutil

    return psutil.Process(os.getpid()).memory_info().rss


def peak_memory_mb(fn: Callable[[], object], *, interval_s: float = 0.002) -> float:
    """Peak memory in MB while ``fn`` runs: CUDA max allocated on GPU, else sampled process RSS."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20
    peak = _rss_bytes()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_bytes())
            done.wait(interval_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    return max(peak, _rss_bytes()) / 2**20


def compare_architectures(models: dict[str, nn.Module], example_inputs: torch.Tensor) -> dict[str, dict[str, float]]:
    """Parameters and FLOPs per item of each model on ``example_inputs`` (B, ...), with ratios to the first."""
    rows: dict[str, dict[str, float]] = {}
    first = None
    n = len(example_inputs)
    for name, model in models.items():
        model.eval()
        flops = count_flops(lambda m=model: m(example_inputs))
        row = {"params": count_parameters(model), "flops_per_item": (flops or 0) / n}
        if first is None:
            first = row
        row["params_ratio"] = row["params"] / first["params"]
        row["flops_ratio"] = row["flops_per_item"] / first["flops_per_item"] if first["flops_per_item"] else float("nan")
        rows[name] = row
    return rows
