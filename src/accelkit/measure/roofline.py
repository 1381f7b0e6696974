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

    def best(self, other: Roofline) -> Roofline:
        """Per-dtype maximum of two measurements: a peak taken while the machine was busy is too low."""

        def hi(a: float | None, b: float | None) -> float | None:
            return max(x for x in (a, b) if x is not None) if (a is not None or b is not None) else None

        return Roofline(hi(self.fp32_gflops, other.fp32_gflops) or 0.0, hi(self.bf16_gflops, other.bf16_gflops),
                        hi(self.int8_gops, other.int8_gops), self.size, self.threads)

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


def _ort_rates(size: int, repeats: int) -> tuple[float | None, float | None]:
    """fp32 MatMul and int8 MatMulInteger rates through ONNX Runtime (its own GEMM kernels).

    torch's int8 path (``_int_mm``) is far below the VNNI kernels ONNX Runtime uses, so an
    int8 ceiling measured with torch alone would put ORT int8 variants at several hundred
    percent of "peak"; the ceiling is the best any kernel on this machine reaches.
    """
    try:
        import numpy as np
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None, None

    def session(op: str, a_type: int, b_type: int, out_type: int):
        graph = helper.make_graph(
            [helper.make_node(op, ["a", "b"], ["y"])], "gemm",
            [helper.make_tensor_value_info("a", a_type, [size, size]),
             helper.make_tensor_value_info("b", b_type, [size, size])],
            [helper.make_tensor_value_info("y", out_type, [size, size])],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = min(model.ir_version, 9)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])

    flops = 2.0 * size**3
    rng = np.random.default_rng(0)
    try:
        fp = session("MatMul", TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.FLOAT)
        a, b = rng.standard_normal((size, size), dtype=np.float32), rng.standard_normal((size, size), dtype=np.float32)
        fp32 = _best_rate(lambda: fp.run(None, {"a": a, "b": b}), flops, repeats)
        i8 = session("MatMulInteger", TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32)
        a8 = rng.integers(0, 255, (size, size), dtype=np.uint8)
        b8 = rng.integers(-128, 127, (size, size), dtype=np.int8)
        int8 = _best_rate(lambda: i8.run(None, {"a": a8, "b": b8}), flops, repeats)
    except Exception:  # an ORT build without these kernels: torch's figures stand
        return None, None
    del onnx
    return fp32, int8


def measure_roofline(size: int = 1024, repeats: int = 5, device: str = "cpu") -> Roofline:
    """Measure the best-of-``repeats`` GEMM rate of a ``size``³ product per dtype.

    Uses torch.matmul for fp32/bf16, torch._int_mm (int8 × int8 → int32) for int8,
    and on CPU also ONNX Runtime's MatMul / MatMulInteger, keeping the faster of the
    two per dtype; a dtype nothing here can multiply reports None.
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
    if device == "cpu":
        ort_fp32, ort_int8 = _ort_rates(size, repeats)
        fp32 = max(fp32, ort_fp32 or 0.0)
        int8 = max(int8 or 0.0, ort_int8 or 0.0) or None
    return Roofline(fp32, bf16, int8, size, torch.get_num_threads())
