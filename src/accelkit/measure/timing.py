"""Side-by-side timing: baseline and variants interleaved A B A B …, ratio per pair.

These machines are shared and noisy, so a speed-up is only ever quoted as the
median of per-pair ratios taken in one run, never as a ratio of two separate runs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

__all__ = ["Timing", "compare_interleaved", "percentile", "synchronize"]


def synchronize() -> None:
    """Wait for queued CUDA work so the clock reads finished work (no-op without CUDA)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    if not values:
        raise ValueError("percentile of an empty list")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass
class Timing:
    """Wall-clock times of one callable over the interleaved repeats."""

    name: str
    times_s: list[float] = field(default_factory=list)
    speedup: float | None = None  # median over pairs of baseline_time / this_time
    pair_ratios: list[float] = field(default_factory=list)

    @property
    def p50_ms(self) -> float:
        return percentile(self.times_s, 50) * 1e3

    @property
    def p95_ms(self) -> float:
        return percentile(self.times_s, 95) * 1e3


def _timed(fn: Callable[[], object]) -> float:
    synchronize()
    start = time.perf_counter()
    fn()
    synchronize()
    return time.perf_counter() - start


def compare_interleaved(
    fns: dict[str, Callable[[], object]],
    *,
    baseline: str,
    repeats: int = 5,
    warmup: int = 1,
    on_step: Callable[[str, int], None] | None = None,
) -> dict[str, Timing]:
    """Time every callable ``repeats`` times, interleaved with the baseline.

    Round r runs baseline, v1, v2, … (the variant order rotates each round so no
    variant always follows the same neighbour). Each variant's ratio in round r is
    baseline_time[r] / variant_time[r]; its ``speedup`` is the median of those.
    """
    if baseline not in fns:
        raise ValueError(f"baseline={baseline!r} is not among the callables {sorted(fns)}")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats={repeats}, warmup={warmup}: need repeats >= 1 and warmup >= 0")
    names = list(fns)
    others = [n for n in names if n != baseline]
    for _ in range(warmup):
        for name in names:
            fns[name]()
    timings = {name: Timing(name) for name in names}
    for r in range(repeats):
        shift = r % len(others) if others else 0
        order = [baseline, *others[shift:], *others[:shift]]
        for name in order:
            timings[name].times_s.append(_timed(fns[name]))
            if on_step is not None:
                on_step(name, r)
    base_times = timings[baseline].times_s
    for name in names:
        t = timings[name]
        t.pair_ratios = [b / v for b, v in zip(base_times, t.times_s, strict=True) if v > 0]
        t.speedup = statistics.median(t.pair_ratios) if t.pair_ratios else None
    return timings
