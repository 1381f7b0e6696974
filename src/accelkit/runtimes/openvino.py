"""OpenVINO as a runtime: an ONNX graph compiled by OpenVINO for a CPU (or an Intel GPU), served
from several infer requests each on a slice of the batch, optionally compiled again for each input
shape it meets (static shapes); saved as the graph plus its settings.

Buys OpenVINO's kernels (oneDNN with its own fusions, VNNI and AMX tiles) without writing any;
costs a dependency of the default install (``openvino``; absent, the runtime says so).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from accelkit._lazy import is_available, require
from accelkit._threads import available_cpus
from accelkit.config import Config
from accelkit.errors import ConfigError
from accelkit.runtimes.base import Runtime, RuntimeRecord, name_inputs
from accelkit.runtimes.onnxruntime import OrtConfig, read_verified_graph
from accelkit.runtimes.registry import register_runtime
from accelkit.runtimes.streams import split_rows
from accelkit.signal_stack import keep_signal_stack

__all__ = ["OpenVinoConfig", "OpenVinoModule"]

_PRECISIONS = ("f32", "bf16")
_DEVICES = ("CPU", "GPU")


@dataclass
class OpenVinoConfig(Config):
    """``precision``: "bf16" (native bf16 CPUs) or "f32". ``streams``: sessions side by side, each
    on a slice of the batch (None: one per compute thread). ``device``: OpenVINO's "CPU" or "GPU".
    ``static_shapes``: the most input shapes that each get a compile of their own with every
    dimension fixed (0: the one dynamic-shape compile serves every call); a shape met after that
    many runs on the dynamic compile."""

    precision: str = "f32"
    streams: int | None = None
    threads: int | None = None  # None: $ACCELKIT_THREADS, else accelkit env's recommendation
    device: str = "CPU"
    static_shapes: int = 0
    version: int = 1

    def __post_init__(self) -> None:
        if self.precision not in _PRECISIONS:
            raise ConfigError(f"precision={self.precision!r}: expected one of {_PRECISIONS}")
        if self.streams is not None and self.streams < 1:
            raise ConfigError(f"streams={self.streams}: expected None or >= 1")
        if self.device not in _DEVICES:
            raise ConfigError(f"device={self.device!r}: expected one of {_DEVICES}")
        if self.static_shapes < 0:
            raise ConfigError(f"static_shapes={self.static_shapes}: expected 0 (one dynamic-shape compile) or more")


@register_runtime
class OpenVinoModule(Runtime):
    """An OpenVINO compiled model called like the PyTorch model it replaces (named tensors in,
    torch tensors out). Keeps the ONNX bytes, so it saves like an ONNX Runtime module."""

    name = "openvino"
    form = "openvino"
    family = "openvino"
    computes_outside_torch = True
    devices = ("cpu",)  # OpenVINO's GPU is an Intel GPU, which torch does not name as a device
    model_file = "model.onnx"

    def __init__(self, onnx_bytes: bytes, config: OpenVinoConfig, *, details: dict | None = None,
                 flop_reference: Any = None) -> None:
        ov = require("openvino", "openvino")
        self.onnx_bytes, self.config, self.flop_reference = onnx_bytes, config, flop_reference
        self.device = config.device.lower()
        threads = config.threads or OrtConfig().threads()
        streams = min(config.streams or threads, threads)
        core = ov.Core()
        with tempfile.TemporaryDirectory(prefix="accelkit-ov-") as tmp:
            path = os.path.join(tmp, "model.onnx")
            with open(path, "wb") as fh:
                fh.write(onnx_bytes)
            model = core.read_model(path)
        settings = {"INFERENCE_PRECISION_HINT": config.precision, "INFERENCE_NUM_THREADS": threads,
                    "NUM_STREAMS": streams, "PERFORMANCE_HINT": "THROUGHPUT" if streams > 1 else "LATENCY"}
        if config.device == "CPU" and threads < available_cpus():
            # a share of the cores means other processes beside this one (accelkit run's Ray actors):
            # OpenVINO pins each process's threads from the first core, so they would all queue on it
            settings["ENABLE_CPU_PINNING"] = False
        with keep_signal_stack():  # compile_model swaps in a signal stack it later frees
            self._compiled = core.compile_model(model, config.device, settings)
        self._requests = [self._compiled.create_infer_request() for _ in range(streams)]
        self.inputs = [p.get_any_name() for p in self._compiled.inputs]
        self._threads = threads
        self.extra: dict[str, Any] = dict(details or {})
        # static shapes: compiled on first meeting a shape, from the model as read (kept only for that)
        self._core, self._settings = core, settings
        self._model = model if config.static_shapes else None
        self._static: dict[tuple, list[Any]] = {}
        self._static_compile_s = 0.0

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None if is_available("openvino") else "openvino is not installed (pip install openvino)"

    def describe(self) -> RuntimeRecord:
        extra = dict(self.extra)
        if self.config.static_shapes:
            extra.update(static_shapes_compiled=len(self._static),
                         static_compile_s=round(self._static_compile_s, 2))
        return RuntimeRecord(self.name, self.device, self.config.precision, len(self._requests), self._threads, extra)

    @property
    def serialized_size_bytes(self) -> int:
        return len(self.onnx_bytes)

    def _feeds(self, args: tuple, kwargs: dict) -> dict[str, np.ndarray]:
        feeds = name_inputs(args, kwargs, self.inputs, "OpenVINO")
        return {k: (v.detach().cpu().float() if v.dtype == torch.bfloat16 else v.detach().cpu()).numpy()
                if isinstance(v, torch.Tensor) else v for k, v in feeds.items()}

    def run(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        feeds = self._feeds(args, kwargs)
        rows = len(next(iter(feeds.values())))
        n = len(self._requests)
        parts = [feeds] if n == 1 or rows < n else split_rows(feeds, n)
        # each request on its slice, on OpenVINO's own threads: start_async takes the inputs in this
        # thread, then infers without the GIL. (Python threads each calling infer() deadlocked
        # pyopenvino on a first concurrent call: a C++ static-init guard held against the GIL.)
        requests = [self._requests_for(part)[i] for i, part in enumerate(parts)]
        for request, part in zip(requests, parts, strict=True):
            request.start_async(part)
        for request in requests:
            request.wait()
        return torch.from_numpy(np.concatenate([r.get_output_tensor(0).data.copy() for r in requests]))

    def _requests_for(self, feeds: dict[str, Any]) -> list[Any]:
        """The infer requests of the compile for these inputs' shapes: a static one (compiled now
        when the shape is new and the limit allows), else the dynamic one."""
        if not self.config.static_shapes:
            return self._requests
        key = tuple((name, tuple(np.shape(v))) for name, v in sorted(feeds.items()))
        requests = self._static.get(key)
        if requests is None:
            if len(self._static) >= self.config.static_shapes:
                return self._requests
            start = time.perf_counter()
            model = self._model.clone()
            model.reshape({name: list(shape) for name, shape in key})
            with keep_signal_stack():
                compiled = self._core.compile_model(model, self.config.device, self._settings)
            requests = self._static[key] = [compiled.create_infer_request() for _ in self._requests]
            self._static_compile_s += time.perf_counter() - start
        return requests

    def with_static_shapes(self, limit: int) -> OpenVinoModule:
        """The same graph, compiled again for each input shape it meets, up to ``limit`` shapes."""
        config = OpenVinoConfig.from_dict({**self.config.to_dict(), "static_shapes": limit})
        return type(self)(self.onnx_bytes, config, details=self.extra, flop_reference=self.flop_reference)

    def with_streams(self, streams: int | None) -> OpenVinoModule:
        """The same graph compiled again for ``streams`` requests side by side (None: one per thread)."""
        config = OpenVinoConfig.from_dict({**self.config.to_dict(), "streams": streams})
        return type(self)(self.onnx_bytes, config, details=self.extra, flop_reference=self.flop_reference)

    def save(self, folder: Path) -> dict[str, Any]:
        (folder / self.model_file).write_bytes(self.onnx_bytes)
        return {"runtime": self.name, "device": self.device, "openvino": self.config.to_dict(),
                "runtime_extra": dict(self.extra)}

    @classmethod
    def load(cls, folder: Path, fields: Mapping[str, Any], *, baseline: Any = None) -> OpenVinoModule:
        return cls(read_verified_graph(folder / cls.model_file), OpenVinoConfig.from_dict(fields.get("openvino") or {}),
                   details=fields.get("runtime_extra"))
