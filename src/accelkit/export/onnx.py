"""ONNX export with dynamic batch/sequence axes, checked against PyTorch, and ONNX Runtime's
int8 quantizers; the graphs run in the runtimes of accelkit.runtimes (onnxruntime, openvino).

Export costs models with data-dependent control flow (they do not export) and leaves a graph
that no longer changes with the Python code.
"""

from __future__ import annotations

import contextlib
import logging
import re
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from accelkit._lazy import require
from accelkit.config import Config
from accelkit.errors import AccelkitError, ConfigError
from accelkit.runtimes.onnxruntime import OrtConfig, OrtModule

__all__ = [
    "OnnxExportConfig",
    "OnnxExportError",
    "OrtConfig",
    "OrtModule",
    "export_onnx",
    "named_numpy_inputs",
    "ort_session_module",
    "quantize_onnx_dynamic",
    "quantize_onnx_static",
]

_CALIB_METHODS = ("minmax", "entropy", "percentile")
_ATTENTION = ("eager", "model")


class OnnxExportError(AccelkitError):
    """ONNX export failed or its outputs disagree with PyTorch; the message names the op and the fallback."""


@dataclass
class OnnxExportConfig(Config):
    """``opset``: ONNX opset; dynamic axes for batch (0) and sequence (1 for integer token inputs);
    ``attention``: "eager" exports a transformers model's attention as transformers' eager code (one
    float mask added to the scores, a plain softmax), which ONNX Runtime and OpenVINO fuse; "model"
    keeps the implementation the model was loaded with (sdpa: its boolean mask becomes a select per
    layer and a NaN guard after each softmax, which they do not)."""

    opset: int = 17
    attention: str = "eager"
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
        if self.attention not in _ATTENTION:
            raise ConfigError(f"attention={self.attention!r}: expected one of {', '.join(_ATTENTION)}")


@contextlib.contextmanager
def _eager_attention(model: nn.Module) -> Iterator[None]:
    """Within the block, every transformers model inside ``model`` computes attention with its
    eager implementation; each gets its own back after. Models that are not transformers', or that
    refuse the switch, are left as they are."""
    switched = []
    for module in model.modules():
        config = getattr(module, "config", None)
        own = getattr(config, "_attn_implementation", None)
        if own is None or own == "eager" or not callable(getattr(module, "set_attn_implementation", None)):
            continue
        try:
            module.set_attn_implementation("eager")
        except (ValueError, ImportError, AttributeError):
            continue
        switched.append((module, own))
    try:
        yield
    finally:
        for module, own in reversed(switched):
            module.set_attn_implementation(own)


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


def named_numpy_inputs(batch: Any) -> dict[str, Any]:
    """One batch as numpy arrays under the exporter's input names: the feeds NNCF calibrates on
    and ONNX Runtime or OpenVINO take."""
    names, tensors = _as_named_inputs(batch)
    return {n: t.numpy() for n, t in zip(names, tensors, strict=True)}


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
        eager = _eager_attention(model) if config.attention == "eager" else contextlib.nullcontext()
        try:
            with warnings.catch_warnings(), eager:
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


def ort_session_module(model: nn.Module, example_inputs: Any, export: OnnxExportConfig | None = None,
                       runtime: OrtConfig | None = None, *, device: str = "cpu") -> OrtModule:
    """Export ``model`` and serve the fp32 graph from the ONNX Runtime that runs on ``device``."""
    from accelkit.runtimes.registry import runtime_serving

    session_type = runtime_serving(OrtModule.family, device)
    return session_type(export_onnx(model, example_inputs, export), runtime, flop_reference=model, device=device)


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
