"""ONNX export with dynamic batch/sequence axes, checked against PyTorch, run in ONNX Runtime.

ONNX Runtime fuses attention, LayerNorm and GELU and has VNNI int8 kernels, so on CPU it
is often faster than eager PyTorch; the cost is a second runtime, a CPU-only session here,
and a graph that no longer changes with the Python code.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from accelkit._lazy import require
from accelkit.config import Config
from accelkit.errors import AccelkitError, ConfigError

__all__ = [
    "OnnxExportConfig",
    "OnnxExportError",
    "OrtConfig",
    "OrtModule",
    "export_onnx",
    "ort_session_module",
    "quantize_onnx_dynamic",
    "quantize_onnx_static",
]

_OPT_LEVELS = ("disable", "basic", "extended", "all")
_CALIB_METHODS = ("minmax", "entropy", "percentile")


class OnnxExportError(AccelkitError):
    """ONNX export failed or its outputs disagree with PyTorch; the message names the op and the fallback."""


@dataclass
class OnnxExportConfig(Config):
    """``opset``: ONNX opset; dynamic axes for batch (0) and sequence (1 for integer token inputs)."""

    opset: int = 17
    dynamic_batch: bool = True
    dynamic_sequence: bool = True
    check_rtol: float = 1e-2  # ONNX Runtime's own test tolerance for exported graphs
    check_atol: float = 1e-3
    version: int = 1

    def __post_init__(self) -> None:
        if not 13 <= self.opset <= 21:
            raise ConfigError(f"opset={self.opset}: expected 13..21 (17 is a safe default)")
        if self.check_rtol < 0 or self.check_atol < 0:
            raise ConfigError(f"check_rtol={self.check_rtol}, check_atol={self.check_atol}: expected >= 0")


@dataclass
class OrtConfig(Config):
    """Session options: graph optimization level and threads.

    ``intra_op_threads=None`` takes $ACCELKIT_THREADS, else ``accelkit env``'s recommendation.
    """

    graph_optimization_level: str = "all"
    intra_op_threads: int | None = None
    # Spinning threads keep burning CPU after a run and slow whatever runs next (the baseline
    # in an interleaved benchmark, or a neighbour on a shared box); off by default.
    allow_spinning: bool = False
    # sessions run side by side, each on a slice of the batch with threads // streams threads:
    # short sequences leave intra-op threads idle, separate streams keep every core busy
    streams: int = 1
    version: int = 1

    def __post_init__(self) -> None:
        if self.streams < 1:
            raise ConfigError(f"streams={self.streams}: expected >= 1")
        if self.graph_optimization_level not in _OPT_LEVELS:
            raise ConfigError(
                f"graph_optimization_level={self.graph_optimization_level!r}: expected one of {_OPT_LEVELS}"
            )
        if self.intra_op_threads is not None and self.intra_op_threads < 1:
            raise ConfigError(f"intra_op_threads={self.intra_op_threads}: expected None or >= 1")

    def threads(self) -> int:
        if self.intra_op_threads is not None:
            return self.intra_op_threads
        env = os.environ.get("ACCELKIT_THREADS")
        if env and env.isdigit() and int(env) > 0:
            return int(env)
        from accelkit.hardware import probe

        return int(probe()["recommend"]["threads"])


def _as_named_inputs(example: Any) -> tuple[list[str], tuple[torch.Tensor, ...]]:
    """(names, tensors) for a dict of tensors, one tensor, or a tuple of tensors."""
    if isinstance(example, dict):
        items = [(k, v) for k, v in example.items() if isinstance(v, torch.Tensor)]
        return [k for k, _ in items], tuple(v for _, v in items)
    if isinstance(example, torch.Tensor):
        return ["input"], (example,)
    if isinstance(example, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in example):
        return [f"input_{i}" for i in range(len(example))], tuple(example)
    raise ConfigError(
        f"example inputs of type {type(example).__name__}: expected a tensor, a tuple of tensors "
        "or a dict of named tensors (what the workload's batches yield)"
    )


def _first_tensor(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        return _first_tensor(out[0])
    # a Hugging Face ModelOutput: the tensor the task reads (logits, else token states)
    for key in ("logits", "last_hidden_state"):
        value = getattr(out, key, None)
        if isinstance(value, torch.Tensor):
            return value
    raise OnnxExportError(f"model returned {type(out).__name__}; export needs a tensor (or a tuple starting with one)")


class _ExportWrapper(nn.Module):
    """Calls the model with named inputs and returns its first tensor output (e.g. last_hidden_state)."""

    def __init__(self, model: nn.Module, names: list[str], by_name: bool) -> None:
        super().__init__()
        self.model = model
        self.names = names
        self.by_name = by_name

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        if self.by_name:
            return _first_tensor(self.model(**dict(zip(self.names, args, strict=True))))
        return _first_tensor(self.model(*args))


def _failing_op(exc: BaseException) -> str:
    text = str(exc)
    m = re.search(r"operator '?([\w:.]+)'?", text) or re.search(r"(aten::\w+|prim::\w+)", text)
    return m.group(1) if m else "unknown op"


def export_onnx(model: nn.Module, example_inputs: Any, config: OnnxExportConfig | None = None) -> bytes:
    """Export ``model`` (eval mode) to ONNX bytes and check them against PyTorch on ``example_inputs``.

    Raises OnnxExportError naming the op when the exporter fails, or the largest
    difference when ONNX Runtime's outputs disagree with PyTorch's.
    """
    config = config or OnnxExportConfig()
    names, args = _as_named_inputs(example_inputs)
    # eval() on the wrapper: the exporter restores the wrapper's mode recursively afterwards,
    # and a fresh wrapper is in training mode, which would switch dropout on in ``model``.
    wrapper = _ExportWrapper(model, names, isinstance(example_inputs, dict)).eval()
    model.eval()
    with torch.no_grad():
        reference = wrapper(*args)
    seq_len = args[0].shape[1] if args[0].dim() >= 2 else None
    dynamic_axes: dict[str, dict[int, str]] = {}
    for name, t in zip(names, args, strict=True):
        axes: dict[int, str] = {}
        if config.dynamic_batch:
            axes[0] = "batch"
        if config.dynamic_sequence and t.dim() >= 2 and not t.is_floating_point():
            axes[1] = "sequence"
        dynamic_axes[name] = axes
    out_axes: dict[int, str] = {0: "batch"} if config.dynamic_batch else {}
    if config.dynamic_sequence and seq_len is not None and not args[0].is_floating_point():
        if reference.dim() >= 2 and reference.shape[1] == seq_len:
            out_axes[1] = "sequence"
    dynamic_axes["output"] = out_axes
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    wrapper, args, str(path), input_names=names, output_names=["output"],
                    dynamic_axes=dynamic_axes, opset_version=config.opset, dynamo=False,
                )
        except Exception as exc:
            raise OnnxExportError(
                f"ONNX export failed at {_failing_op(exc)} ({str(exc).splitlines()[0][:200]}); "
                "fallback: keep the PyTorch model (variants bf16-cast, int8-dynamic, compile)"
            ) from exc
        onnx_bytes = path.read_bytes()
    session = OrtModule(onnx_bytes, OrtConfig(intra_op_threads=1))
    got = session(*args)
    if got.shape != reference.shape or not torch.allclose(got, reference.float(), rtol=config.check_rtol, atol=config.check_atol):
        diff = (got - reference).abs().max().item() if got.shape == reference.shape else float("nan")
        raise OnnxExportError(
            f"ONNX Runtime output differs from PyTorch (shape {tuple(got.shape)} vs {tuple(reference.shape)}, "
            f"max |diff| {diff:.3g} > atol {config.check_atol}); fallback: keep the PyTorch model"
        )
    return onnx_bytes


_NP_DTYPES = {
    "tensor(float)": "float32",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(float16)": "float16",
    "tensor(bool)": "bool",
}
_QUANT_OPS = ("MatMulInteger", "DynamicQuantizeMatMul", "QLinearMatMul", "QLinearConv", "ConvInteger",
              "DynamicQuantizeLinear", "QuantizeLinear", "DynamicQuantizeLSTM", "QAttention", "QGemm")


class OrtModule:
    """An ONNX Runtime session called like the PyTorch model it replaces.

    Takes the same positional or named tensor inputs and returns torch tensors, so a
    workload's ``forward`` runs it unchanged. Keeps the ONNX bytes for saving.
    """

    def __init__(self, onnx_bytes: bytes, config: OrtConfig | None = None, *, details: dict | None = None,
                 flop_reference: nn.Module | None = None) -> None:
        ort = require("onnxruntime", "onnx")
        # The float PyTorch model this graph came from: run (and discarded) only under a FLOP
        # counter, which cannot see inside ONNX Runtime, so int8 results still get a roofline fraction.
        self.flop_reference = flop_reference
        self.config = config or OrtConfig()
        self.onnx_bytes = onnx_bytes
        opts = ort.SessionOptions()
        opts.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.config.graph_optimization_level]
        streams = self.config.streams
        opts.intra_op_num_threads = max(1, self.config.threads() // streams)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # errors only: shape-mismatch warnings are expected with dynamic axes
        if not self.config.allow_spinning:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
        self._streams = [self.session] + [ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
                                          for _ in range(streams - 1)]
        self._pool = None
        if streams > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(streams, thread_name_prefix="accelkit-ort")
        self.inputs = [(i.name, _NP_DTYPES.get(i.type, "float32"), len(i.shape)) for i in self.session.get_inputs()]
        self.accelkit_details: dict = {"runtime": "onnxruntime", "threads": opts.intra_op_num_threads,
                                       "graph_optimization_level": self.config.graph_optimization_level,
                                       "quantized_ops": self.quantized_op_count(), **(details or {})}

    @property
    def serialized_size_bytes(self) -> int:
        return len(self.onnx_bytes)

    def quantized_op_count(self) -> int:
        """How many nodes of the graph are integer/quantization ops (0 for a float graph)."""
        onnx = require("onnx", "onnx")
        graph = onnx.load_from_string(self.onnx_bytes).graph
        return sum(node.op_type in _QUANT_OPS for node in graph.node)

    def _feeds(self, args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        feeds: dict[str, Any] = {}
        names = [n for n, _, _ in self.inputs]
        for name, value in zip(names, args, strict=False):
            feeds[name] = value
        for name, value in kwargs.items():
            if name in names:
                feeds[name] = value
        missing = [n for n in names if n not in feeds]
        if missing:
            raise ConfigError(f"ONNX model needs inputs {names}; missing {missing}")
        out = {}
        for name, dtype, rank in self.inputs:
            value = feeds[name]
            if isinstance(value, torch.Tensor):
                value = value.detach().cpu()
                if value.dtype == torch.bfloat16:
                    value = value.float()
                value = value.numpy()
            if value.ndim != rank:
                raise ConfigError(f"input {name!r} has {value.ndim} dims; the ONNX model expects {rank}")
            out[name] = value.astype(dtype, copy=False)
        return out

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if self.flop_reference is not None and _counting_flops():
            with torch.no_grad():
                self.flop_reference(*args, **kwargs)
        feeds = self._feeds(args, kwargs)
        rows = len(next(iter(feeds.values())))
        if self._pool is None or rows < len(self._streams):
            outs = [torch.from_numpy(o) for o in self.session.run(None, feeds)]
        else:
            # ORT releases the GIL while it runs: the sessions run their slices at once
            parts = split_rows(feeds, len(self._streams))
            results = list(self._pool.map(lambda sp: sp[0].run(None, sp[1]), zip(self._streams, parts, strict=True)))
            outs = [torch.from_numpy(np.concatenate([r[i] for r in results])) for i in range(len(results[0]))]
        return outs[0] if len(outs) == 1 else tuple(outs)


def split_rows(feeds: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """``n`` contiguous slices of every input's rows (batch dimension first), one per stream."""
    rows = len(next(iter(feeds.values())))
    bounds = [rows * i // n for i in range(n + 1)]
    return [{k: v[lo:hi] for k, v in feeds.items()} for lo, hi in zip(bounds, bounds[1:], strict=False)]


def _counting_flops() -> bool:
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

    return any("FlopCounter" in type(mode).__name__ for mode in _get_current_dispatch_mode_stack())


def ort_session_module(model: nn.Module, example_inputs: Any, export: OnnxExportConfig | None = None,
                       runtime: OrtConfig | None = None) -> OrtModule:
    """Export ``model`` and wrap the fp32 graph in an ONNX Runtime session."""
    return OrtModule(export_onnx(model, example_inputs, export), runtime, flop_reference=model)


class _DropPreprocessAdvice(logging.Filter):
    # ORT's quantizers log this advice to the root logger on every call; our graphs come from
    # torch.onnx.export with shapes already inferred, so it is noise in every bench and search
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def _via_files(onnx_bytes: bytes, fn) -> bytes:
    advice = _DropPreprocessAdvice()
    root = logging.getLogger()
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        src.write_bytes(onnx_bytes)
        root.addFilter(advice)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fn(str(src), str(dst))
        finally:
            root.removeFilter(advice)
        return dst.read_bytes()


def quantize_onnx_dynamic(
    onnx_bytes: bytes,
    *,
    per_channel: bool = False,
    reduce_range: bool = False,
    nodes_to_exclude: Iterable[str] = (),
    op_types: Sequence[str] | None = None,
) -> bytes:
    """ONNX Runtime's dynamic int8 (weights int8 offline, activations uint8 per tensor at run time).

    Defaults are ONNX Runtime's own (per-tensor weights), i.e. what Optimum users get.
    """
    quant = require("onnxruntime.quantization", "onnx")
    kwargs = dict(weight_type=quant.QuantType.QInt8, per_channel=per_channel, reduce_range=reduce_range,
                  nodes_to_exclude=list(nodes_to_exclude))
    if op_types is not None:
        kwargs["op_types_to_quantize"] = list(op_types)
    return _via_files(onnx_bytes, lambda s, d: quant.quantize_dynamic(s, d, **kwargs))


class _CalibReader:
    def __init__(self, feeds: list[dict]) -> None:
        self._it = iter(feeds)

    def get_next(self) -> dict | None:
        return next(self._it, None)

    def rewind(self) -> None:  # pragma: no cover - ORT calls it for some methods
        pass


def quantize_onnx_static(
    onnx_bytes: bytes,
    calib_inputs: Sequence[Any],
    *,
    method: str = "minmax",
    per_channel: bool = True,
    nodes_to_exclude: Iterable[str] = (),
) -> bytes:
    """Static int8 in QDQ format, activation ranges calibrated on ``calib_inputs`` (batches of model inputs).

    ``method``: "minmax", "entropy" or "percentile" (99.999th percentile of |x|).
    """
    if method not in _CALIB_METHODS:
        raise ConfigError(f"method={method!r}: expected one of {_CALIB_METHODS}")
    calib_inputs = list(calib_inputs)
    if not calib_inputs:
        raise ConfigError("calibration set is empty: pass at least one batch of representative inputs")
    quant = require("onnxruntime.quantization", "onnx")
    probe = OrtModule(onnx_bytes, OrtConfig(intra_op_threads=1))
    feeds = []
    for batch in calib_inputs:
        names, args = _as_named_inputs(batch)
        feeds.append(probe._feeds(args if not isinstance(batch, dict) else (), batch if isinstance(batch, dict) else {}))
    calib_method = {"minmax": quant.CalibrationMethod.MinMax, "entropy": quant.CalibrationMethod.Entropy,
                    "percentile": quant.CalibrationMethod.Percentile}[method]

    def run(src: str, dst: str) -> None:
        quant.quantize_static(
            src, dst, _CalibReader(feeds), quant_format=quant.QuantFormat.QDQ,
            activation_type=quant.QuantType.QUInt8, weight_type=quant.QuantType.QInt8,
            per_channel=per_channel, calibrate_method=calib_method, nodes_to_exclude=list(nodes_to_exclude),
            extra_options={"CalibTensorRangeSymmetric": False},
        )

    return _via_files(onnx_bytes, run)
