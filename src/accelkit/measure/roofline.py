"""The machine's measured GEMM ceiling for fp32, bf16 and int8.

Any result can then be stated as a fraction of what this machine can do, not only
as a ratio to a baseline that may itself be far from the hardware's limit.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

__all__ = ["Roofline", "measure_roofline"]


@dataclass
class Roofline:
    """Peak measured matrix-multiply rates in GFLOP/s (GOP/s for int8)."""

    fp32_gflops: float
    bf16_gflops: float | None
    int8_gops: float | None
    size: int
    threads: int

    def to_dict(self) -> dict:
        return asdict(self)

    def fraction(self, flops: float, seconds: float, dtype: str = "fp32") -> float | None:
        """Fraction of this machine's peak that ``flops`` done in ``seconds`` reached."""
        peak = {"fp32": self.fp32_gflops, "bf16": self.bf16_gflops, "int8": self.int8_gops}[dtype]
        if not peak or seconds <= 0:
            return None
        return flops / seconds / 1e9 / peak


def _best_rate(fn, flops: float, repeats: int) -> float:
    fn()  # warm-up: kernel selection, packing
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return flops / best / 1e9


def measure_roofline(size: int = 1024, repeats: int = 5, device: str = "cpu") -> Roofline:
    """Measure the best-of-``repeats`` GEMM rate of a ``size``³ product per dtype.

    Uses torch.matmul for fp32/bf16 and torch._int_mm (int8 × int8 → int32) for
    int8; a dtype this build cannot multiply reports None.
    """
    flops = 2.0 * size**3
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(device)
    b = torch.randn(size, size, generator=gen).to(device)
    fp32 = _best_rate(lambda: a @ b, flops, repeats)
    try:
        a16, b16 = a.bfloat16(), b.bfloat16()
        bf16 = _best_rate(lambda: a16 @ b16, flops, repeats)
    except RuntimeError:
        bf16 = None
    try:
        a8 = torch.randint(-128, 127, (size, size), dtype=torch.int8, generator=gen).to(device)
        b8 = torch.randint(-128, 127, (size, size), dtype=torch.int8, generator=gen).to(device)
        int8 = _best_rate(lambda: torch._int_mm(a8, b8), flops, repeats)
    except (RuntimeError, AttributeError):
        int8 = None
    return Roofline(fp32, bf16, int8, size, torch.get_num_threads())
