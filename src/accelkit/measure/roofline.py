"""The machine's measured GEMM ceiling for fp32, bf16 and int8.

Any result can then be stated as a fraction of what this machine can do, not only
as a ratio to a baseline that may itself be far from the hardware's limit.

One GEMM size is not enough for a ceiling: a 512³ bf16 product on an AMX Xeon runs at
half the rate of a 2048³ one, and a ceiling taken there flatters every fraction. So each
kernel is measured over growing sizes until its rate stops rising (or its time budget
is spent), and the best rate any size reached is kept. Each kernel the variants run
through is measured on its own (torch's matmul and ``_int_mm``, ONNX Runtime's MatMul and
MatMulInteger, OpenVINO where it is installed); a dtype's ceiling is the best of its kernels.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

__all__ = ["Roofline", "grow_rate", "measure_roofline"]

# sizes tried after the starting one; the last entries only when the time budget allows
_LADDER = (256, 512, 1024, 2048, 3072, 4096)
_DTYPES = ("fp32", "bf16", "int8")


def _dtype_of(kernel: str) -> str:
    """``"ort-int8"`` -> ``"int8"``: a kernel's name ends with the dtype it multiplies."""
    return kernel.rsplit("-", 1)[-1]


@dataclass
class Roofline:
    """Peak measured matrix-multiply rates in GFLOP/s (GOP/s for int8).

    ``fp32_gflops``/``bf16_gflops``/``int8_gops`` are the best over every kernel of that dtype;
    ``kernels`` holds each kernel's own best (``{"gflops": rate, "size": n, "curve": [[n, rate], ...]}``,
    GOP/s for int8 kernels) and ``sizes`` the GEMM size at which each dtype's ceiling was reached.
    ``size`` is the size the measurement started from. Results files written before ``kernels`` and
    ``sizes`` existed load with both empty.
    """

    fp32_gflops: float
    bf16_gflops: float | None
    int8_gops: float | None
    size: int
    threads: int
    kernels: dict[str, dict[str, Any]] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Roofline:
        """A ``to_dict()`` result, old or new; keys this version does not know are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def peak(self, dtype: str) -> float | None:
        return {"fp32": self.fp32_gflops, "bf16": self.bf16_gflops, "int8": self.int8_gops}[dtype]

    def best(self, other: Roofline) -> Roofline:
        """Per-dtype (and per-kernel) maximum of two measurements: a peak taken while the machine was busy is too low."""

        def hi(a: float | None, b: float | None) -> float | None:
            return max(x for x in (a, b) if x is not None) if (a is not None or b is not None) else None

        kernels = dict(self.kernels)
        for name, k in other.kernels.items():
            if name not in kernels or (k.get("gflops") or 0.0) > (kernels[name].get("gflops") or 0.0):
                kernels[name] = k
        sizes = {}
        for dtype in _DTYPES:  # the size goes with whichever measurement gave the dtype's ceiling
            mine, theirs = self.peak(dtype), other.peak(dtype)
            src = other if theirs is not None and (mine is None or theirs > mine) else self
            if dtype in src.sizes:
                sizes[dtype] = src.sizes[dtype]
            elif dtype in self.sizes or dtype in other.sizes:
                sizes[dtype] = self.sizes.get(dtype, other.sizes.get(dtype))
        return Roofline(hi(self.fp32_gflops, other.fp32_gflops) or 0.0, hi(self.bf16_gflops, other.bf16_gflops),
                        hi(self.int8_gops, other.int8_gops), self.size, self.threads, kernels, sizes)

    def fraction(self, flops: float, seconds: float, dtype: str = "fp32") -> float | None:
        """Fraction of this machine's peak that ``flops`` done in ``seconds`` reached."""
        peak = self.peak(dtype)
        if not peak or seconds <= 0:
            return None
        return flops / seconds / 1e9 / peak


def grow_rate(
    rate: Callable[[int], float | None],
    sizes: Iterable[int],
    *,
    max_seconds: float = 2.0,
    min_gain: float = 0.05,
    patience: int = 2,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[float, int, list[list[float]]] | None:
    """Call ``rate(n)`` over growing ``sizes`` until the rate stops rising; the best rate, its size, the curve.

    Stops after ``patience`` sizes in a row each less than ``min_gain`` better than the best so far,
    before a size whose predicted cost (the last size's, scaled by n³) would take the time spent past
    ``max_seconds``, and at the first size that fails (``None`` or an exception: out of memory, say).
    The first size is always tried; ``None`` when it fails, meaning the kernel is not there.
    """
    start = clock()
    best: tuple[float, int] | None = None
    curve: list[list[float]] = []
    flat = 0
    last: tuple[int, float] | None = None  # (size, seconds it cost)
    for n in sizes:
        if last is not None:
            predicted = last[1] * (n / last[0]) ** 3
            if clock() - start + predicted > max_seconds:
                break
        t0 = clock()
        try:
            r = rate(n)
        except Exception:  # noqa: BLE001 - a kernel that cannot run this size ends its growth, not the measurement
            r = None
        if r is None or r <= 0:
            break
        last = (n, clock() - t0)
        curve.append([n, r])
        if best is None or r >= best[0] * (1 + min_gain):
            flat = 0
        else:
            flat += 1
        if best is None or r > best[0]:
            best = (r, n)
        if flat >= patience:
            break
    return None if best is None else (best[0], best[1], curve)


def _sizes(size: int, grow: bool, fits: Callable[[int], bool]) -> list[int]:
    if not grow:
        return [size]
    return [size] + [n for n in _LADDER if n > size and fits(n)]


def _fits(device: str) -> Callable[[int], bool]:
    """Memory guard: the operands, result and a runtime's copies of one size must use under a quarter of what is free."""
    free: float | None = None
    try:
        if device.startswith("cuda"):
            free = float(torch.cuda.mem_get_info()[0])
        else:
            free = float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError, RuntimeError):
        free = None
    return lambda n: free is None or 6 * 4 * n * n < free / 4


def _sync(device: str) -> None:
    if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _best_rate(fn, flops: float, repeats: int, device: str = "cpu") -> float:
    """Best of ``repeats`` timed calls after one warm-up, as G(FL)OP/s."""
    fn()  # warm-up: kernel selection, packing
    _sync(device)
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return flops / max(best, 1e-12) / 1e9


def _torch_kernels(repeats: int, device: str) -> dict[str, Callable[[int], float | None]]:
    gen = torch.Generator().manual_seed(0)

    def mm(dtype: torch.dtype) -> Callable[[int], float]:
        def rate(n: int) -> float:
            a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
            b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
            return _best_rate(lambda: a @ b, 2.0 * n**3, repeats, device)
        return rate

    def int_mm(n: int) -> float:  # int8 × int8 -> int32, the kernel torch's int8 variants run
        a = torch.randint(-128, 127, (n, n), dtype=torch.int8, generator=gen).to(device)
        b = torch.randint(-128, 127, (n, n), dtype=torch.int8, generator=gen).to(device)
        return _best_rate(lambda: torch._int_mm(a, b), 2.0 * n**3, repeats, device)

    return {"torch-fp32": mm(torch.float32), "torch-bf16": mm(torch.bfloat16), "torch-int8": int_mm}


def _ort_kernels(repeats: int) -> dict[str, Callable[[int], float | None]]:
    """fp32 MatMul and int8 MatMulInteger through ONNX Runtime (its own MLAS GEMM kernels).

    B is a constant initializer, as a model's weights are, so ORT may pre-pack it as it does in
    the exported variants. torch's int8 path can be far from ORT's VNNI kernels: a ceiling from
    torch alone would put ORT int8 variants above 100% of "peak".
    """
    try:
        import numpy as np
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return {}
    rng = np.random.default_rng(0)

    def session(op: str, a_type: int, out_type: int, b) -> Any:
        n = b.shape[0]
        graph = helper.make_graph(
            [helper.make_node(op, ["a", "b"], ["y"])], "gemm",
            [helper.make_tensor_value_info("a", a_type, [n, n])],
            [helper.make_tensor_value_info("y", out_type, [n, n])],
            initializer=[numpy_helper.from_array(b, "b")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = min(model.ir_version, 9)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])

    def fp32(n: int) -> float:
        a = rng.standard_normal((n, n), dtype=np.float32)
        s = session("MatMul", TensorProto.FLOAT, TensorProto.FLOAT, rng.standard_normal((n, n), dtype=np.float32))
        return _best_rate(lambda: s.run(None, {"a": a}), 2.0 * n**3, repeats)

    def int8(n: int) -> float:  # uint8 activations × int8 weights, as quantize_dynamic/static emit
        a = rng.integers(0, 255, (n, n), dtype=np.uint8)
        s = session("MatMulInteger", TensorProto.UINT8, TensorProto.INT32,
                    rng.integers(-128, 127, (n, n), dtype=np.int8))
        return _best_rate(lambda: s.run(None, {"a": a}), 2.0 * n**3, repeats)

    return {"ort-fp32": fp32, "ort-int8": int8}


def _openvino_kernels(repeats: int) -> dict[str, Callable[[int], float | None]]:
    """MatMul through OpenVINO's CPU plugin at f32 and bf16 precision, and int8 via FakeQuantize; {} when not installed."""
    try:
        import numpy as np
        import openvino as ov
        from openvino import opset13 as ops
    except Exception:  # noqa: BLE001 - absent or broken: the other kernels stand
        return {}
    core = ov.Core()
    rng = np.random.default_rng(0)
    threads = torch.get_num_threads()

    def compiled(n: int, precision: str, int8: bool) -> Any:
        a = ops.parameter([n, n], ov.Type.f32, name="a")
        b = rng.standard_normal((n, n), dtype=np.float32)
        if int8:  # the pattern OpenVINO's low-precision transformations turn into an int8 × int8 GEMM
            lo, hi = ops.constant(np.float32(-4.0)), ops.constant(np.float32(4.0))
            x = ops.fake_quantize(a, lo, hi, lo, hi, 256)
            w8 = rng.integers(-127, 127, (n, n), dtype=np.int8)
            w = ops.multiply(ops.convert(ops.constant(w8), ov.Type.f32), ops.constant(np.float32(0.01)))
            y = ops.matmul(x, w, False, False)
        else:
            y = ops.matmul(a, ops.constant(b), False, False)
        model = ov.Model([y], [a], "gemm")
        config = {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads,
                  "PERFORMANCE_HINT": "LATENCY"}
        from accelkit.signal_stack import keep_signal_stack

        with keep_signal_stack():  # compile_model swaps in a signal stack it later frees
            return core.compile_model(model, "CPU", config)

    def kernel(precision: str, int8: bool = False) -> Callable[[int], float]:
        def rate(n: int) -> float:
            request = compiled(n, precision, int8).create_infer_request()
            a = rng.standard_normal((n, n), dtype=np.float32)
            return _best_rate(lambda: request.infer({0: a}), 2.0 * n**3, repeats)
        return rate

    kernels = {"openvino-fp32": kernel("f32"), "openvino-int8": kernel("f32", int8=True)}
    try:
        if "bf16" in [str(p).lower() for p in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]:
            kernels["openvino-bf16"] = kernel("bf16")
    except Exception:  # noqa: BLE001 - no capability list: no bf16 kernel claimed
        pass
    return kernels


def measure_kernels(
    kernels: dict[str, Callable[[int], float | None]],
    sizes: list[int],
    max_seconds: float,
    **grow: Any,
) -> dict[str, dict[str, Any]]:
    """Each kernel's best rate over ``sizes`` (see ``grow_rate``); a kernel that fails at the first size is left out."""
    out: dict[str, dict[str, Any]] = {}
    for name, rate in kernels.items():
        found = grow_rate(rate, sizes, max_seconds=max_seconds, **grow)
        if found is not None:
            best, n, curve = found
            out[name] = {"gflops": best, "size": n, "curve": curve}
    return out


def roofline_from_kernels(kernels: dict[str, dict[str, Any]], size: int, threads: int) -> Roofline:
    """Per dtype, the best over its kernels (fp32 is 0.0 when nothing ran, other dtypes None)."""
    peaks: dict[str, float | None] = {}
    sizes: dict[str, int] = {}
    for dtype in _DTYPES:
        mine = {k: v for k, v in kernels.items() if _dtype_of(k) == dtype}
        if mine:
            top = max(mine.values(), key=lambda v: v["gflops"])
            peaks[dtype], sizes[dtype] = top["gflops"], top["size"]
        else:
            peaks[dtype] = None
    return Roofline(peaks["fp32"] or 0.0, peaks["bf16"], peaks["int8"], size, threads, kernels, sizes)


def measure_roofline(
    size: int = 256,
    repeats: int = 5,
    device: str = "cpu",
    *,
    grow: bool = True,
    max_seconds: float = 1.5,
    openvino: bool = False,
) -> Roofline:
    """Measure each GEMM kernel's best-of-``repeats`` rate (after a warm-up), growing the size from ``size``.

    With ``grow`` the size rises (256, 512, 1024, 2048, 3072, 4096, as memory allows) until the rate
    stops rising or the kernel's ``max_seconds`` would be spent; without it only ``size``³ is measured.
    Kernels: torch.matmul fp32 and bf16, torch._int_mm (int8 × int8 → int32), and on CPU also ONNX
    Runtime's MatMul / MatMulInteger, and OpenVINO's MatMul with ``openvino=True`` when it is installed
    (only when a measured variant runs on OpenVINO: its runtime's thread pools stay in the process,
    and a later fork of a process holding them can crash). A dtype's ceiling is the best of its
    kernels; a dtype nothing here can multiply reports None.
    """
    kernels = _torch_kernels(repeats, device)
    if device == "cpu":
        kernels.update(_ort_kernels(repeats))
        if openvino:
            kernels.update(_openvino_kernels(repeats))
    found = measure_kernels(kernels, _sizes(size, grow, _fits(device)), max_seconds)
    return roofline_from_kernels(found, size, torch.get_num_threads())
