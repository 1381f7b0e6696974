"""ONNX Runtime as a runtime: an ONNX graph served from one or more sessions, called like the
PyTorch model it replaces; saved as the graph plus its session settings.

ONNX Runtime fuses attention, LayerNorm and GELU and has VNNI int8 kernels, so on CPU it is
often faster than eager PyTorch; the cost is a second runtime and a graph that no longer
changes with the Python code. This module serves the CPU provider; other devices are other
modules (onnxruntime_cuda.py) that subclass ``OrtModule`` with their providers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from accelkit._lazy import is_available, require
from accelkit.config import Config
from accelkit.errors import ConfigError, SchemaError
from accelkit.runtimes.base import Runtime, RuntimeRecord, name_inputs
from accelkit.runtimes.registry import register_runtime
from accelkit.runtimes.streams import split_rows

__all__ = ["OrtConfig", "OrtModule", "quantized_op_count", "refuse_external_data"]

_OPT_LEVELS = ("disable", "basic", "extended", "all")
_NP_DTYPES = {
    "tensor(float)": "float32",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(float16)": "float16",
    "tensor(bool)": "bool",
}
_QUANT_OPS = ("MatMulInteger", "DynamicQuantizeMatMul", "QLinearMatMul", "QLinearConv", "ConvInteger",
              "DynamicQuantizeLinear", "QuantizeLinear", "DynamicQuantizeLSTM", "QAttention", "QGemm")


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


def quantized_op_count(onnx_bytes: bytes) -> int:
    """How many nodes of the graph are integer/quantization ops (0 for a float graph)."""
    onnx = require("onnx", "onnx")
    graph = onnx.load_from_string(onnx_bytes).graph
    return sum(node.op_type in _QUANT_OPS for node in graph.node)


def read_verified_graph(onnx_file: Path) -> bytes:
    """The bytes of a saved graph, refused (SchemaError) when they do not parse or name external data."""
    onnx_bytes = onnx_file.read_bytes()
    refuse_external_data(onnx_bytes, onnx_file)
    return onnx_bytes


def refuse_external_data(onnx_bytes: bytes, onnx_file: Path) -> None:
    """SchemaError for a graph that does not parse or whose tensors live in external files: the
    runtime would read paths the graph names (outside the folder, unverified)."""
    onnx = require("onnx", "onnx")
    try:
        graph = onnx.load_from_string(onnx_bytes).graph
    except Exception as exc:  # google.protobuf DecodeError and friends
        raise SchemaError(f"{onnx_file} is not a valid ONNX graph ({type(exc).__name__}); re-save the model") from exc
    external = onnx.TensorProto.EXTERNAL
    tensors = list(graph.initializer) + [a.t for n in graph.node for a in n.attribute if a.HasField("t")]
    if any(t.data_location == external for t in tensors):
        raise SchemaError(f"{onnx_file} refers to external tensor data; accelkit loads only self-contained graphs")


@register_runtime
class OrtModule(Runtime):
    """An ONNX Runtime session called like the PyTorch model it replaces.

    Takes the same positional or named tensor inputs and returns torch tensors, so a
    workload's ``forward`` runs it unchanged. Keeps the ONNX bytes for saving.
    """

    name = "onnxruntime"
    form = "ort"
    family = "onnxruntime"
    computes_outside_torch = True
    devices = ("cpu",)
    model_file = "model.onnx"
    # the execution providers for this class's devices, in ONNX Runtime's order of preference
    providers: ClassVar[tuple[str, ...]] = ("CPUExecutionProvider",)

    def __init__(self, onnx_bytes: bytes, config: OrtConfig | None = None, *, details: dict | None = None,
                 flop_reference: Any = None, device: str = "cpu") -> None:
        ort = require("onnxruntime", "onnx")
        self.flop_reference = flop_reference
        self.config = config or OrtConfig()
        self.onnx_bytes = onnx_bytes
        self.device = device
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
        providers = list(self.session_providers())
        self.session = ort.InferenceSession(onnx_bytes, opts, providers=providers)
        self._streams = [self.session] + [ort.InferenceSession(onnx_bytes, opts, providers=providers)
                                          for _ in range(streams - 1)]
        self._pool = None
        if streams > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(streams, thread_name_prefix="accelkit-ort")
        self.inputs = [(i.name, _NP_DTYPES.get(i.type, "float32"), len(i.shape)) for i in self.session.get_inputs()]
        self._threads = opts.intra_op_num_threads
        self._quantized_ops = quantized_op_count(onnx_bytes)
        self.extra: dict[str, Any] = dict(details or {})

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None if is_available("onnxruntime") else "onnxruntime is not installed (pip install onnxruntime)"

    def session_providers(self) -> Sequence[str]:
        """The execution providers the sessions are created with."""
        return self.providers

    def describe(self) -> RuntimeRecord:
        return RuntimeRecord(self.name, self.device, "int8" if self._quantized_ops else "fp32", len(self._streams),
                             self._threads, {"graph_optimization_level": self.config.graph_optimization_level,
                                             "quantized_ops": self._quantized_ops, **self.extra})

    @property
    def serialized_size_bytes(self) -> int:
        return len(self.onnx_bytes)

    def quantized_op_count(self) -> int:
        """How many nodes of the graph are integer/quantization ops (0 for a float graph)."""
        return self._quantized_ops

    def _feeds(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        feeds = name_inputs(args, kwargs, [n for n, _, _ in self.inputs], "ONNX")
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

    def run(self, *args: Any, **kwargs: Any) -> torch.Tensor | tuple[torch.Tensor, ...]:
        feeds = self._feeds(args, kwargs)
        rows = len(next(iter(feeds.values())))
        if self._pool is None or rows < len(self._streams):
            outs = [torch.from_numpy(o) for o in self.session.run(None, feeds)]
        else:
            # ORT releases the GIL while it runs: the sessions run their slices at once
            parts = split_rows(feeds, len(self._streams))
            results = list(self._pool.map(lambda sp: sp[0].run(None, sp[1]), zip(self._streams, parts, strict=True)))
            outs = [torch.from_numpy(np.concatenate([r[i] for r in results])) for i in range(len(results[0]))]
        if self.device != "cpu":
            outs = [o.to(self.device) for o in outs]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def with_streams(self, streams: int | None) -> OrtModule:
        threads = self.config.threads()
        streams = streams or threads
        if streams > threads:
            raise ConfigError(f"streams={streams}: more streams than the {threads} compute threads here")
        config = OrtConfig.from_dict({**self.config.to_dict(), "intra_op_threads": threads, "streams": streams})
        out = type(self)(self.onnx_bytes, config, details=self.extra, flop_reference=self.flop_reference,
                         device=self.device)
        out.extra["threads_per_stream"] = max(1, threads // streams)
        return out

    def save(self, folder: Path) -> dict[str, Any]:
        (folder / self.model_file).write_bytes(self.onnx_bytes)
        return {"runtime": self.name, "device": self.device, "ort": self.config.to_dict(),
                "runtime_extra": dict(self.extra)}

    @classmethod
    def load(cls, folder: Path, fields: Mapping[str, Any], *, baseline: Any = None) -> OrtModule:
        return cls(read_verified_graph(folder / cls.model_file), OrtConfig.from_dict(fields.get("ort") or {}), details=fields.get("runtime_extra"),
                   device=str(fields.get("device") or cls.devices[0]))
