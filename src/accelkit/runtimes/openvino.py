"""OpenVINO as a runtime: an ONNX graph compiled by OpenVINO for a CPU (or an Intel GPU), served
from several infer requests each on a slice of the batch, optionally compiled again for each input
shape whose calls pay for a compile (static shapes); saved as the graph plus its settings.

Buys OpenVINO's kernels (oneDNN with its own fusions, VNNI and AMX tiles) without writing any;
costs a dependency of the default install (``openvino``; absent, the runtime says so).
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
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
from accelkit.runtimes.streams import split_rows, split_sizes
from accelkit.signal_stack import keep_signal_stack

__all__ = ["STATIC_GAIN", "OpenVinoConfig", "OpenVinoModule", "compile_pays"]

_PRECISIONS = ("f32", "bf16")
_DEVICES = ("CPU", "GPU")

# the share of a call's time that a compile of its own shape saves (minilm int8, batch 32, 2
# threads on a Zen 4: 1.14-1.20x; benchmarks/explore/minilm_static_shapes.py)
STATIC_GAIN = 0.15


def compile_pays(spent_s: float, expected_s: float, compile_s: float, gain: float = STATIC_GAIN) -> bool:
    """Whether a shape's own compile pays: the time its calls have already taken on the dynamic
    compile and the time of the calls announced for it, times the share a compile saves, reach
    one compile's time. Counting the time already spent (the ski-rental rule) keeps calls that
    were never announced within about twice the cost of the better choice made knowing them."""
    return (spent_s + expected_s) * gain >= compile_s


@dataclass
class OpenVinoConfig(Config):
    """``precision``: "bf16" (native bf16 CPUs) or "f32". ``streams``: sessions side by side, each
    on a slice of the batch (None: one per compute thread). ``device``: OpenVINO's "CPU" or "GPU".
    ``static_shapes``: the most input shapes that each get a compile of their own with every
    dimension fixed (0: the one dynamic-shape compile serves every call). A shape is compiled once
    its calls pay for it (``compile_pays``: those already run plus those announced with
    ``expect_calls``), or at ``settle`` (and on first meeting after it); until then, and past the
    limit, it runs on the dynamic compile."""

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
        start = time.perf_counter()
        with keep_signal_stack():  # compile_model swaps in a signal stack it later frees
            self._compiled = core.compile_model(model, config.device, settings)
        # what one compile costs here: this one until a static compile has been timed
        self._compile_s = time.perf_counter() - start
        self._requests = [self._compiled.create_infer_request() for _ in range(streams)]
        self.inputs = [p.get_any_name() for p in self._compiled.inputs]
        self._threads = threads
        self.extra: dict[str, Any] = dict(details or {})
        # static shapes: compiled from the model as read (kept only for that) once a shape's calls pay
        self._core, self._settings = core, settings
        self._model = model if config.static_shapes else None
        self._static: dict[tuple, list[Any]] = {}
        self._static_compile_s = 0.0
        self._spent: dict[tuple, float] = {}  # seconds each shape not yet compiled has run dynamic
        self._announced: Counter[tuple] = Counter()  # calls announced and not yet made, by shape
        # seconds run on the dynamic compile and the input values they took: a call's estimate
        self._dynamic_s, self._dynamic_values = 0.0, 0
        self._settled = False  # after settle(): each new shape compiles on first meeting

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
        parts = split_rows(self._feeds(args, kwargs), len(self._requests))
        # each request on its slice, on OpenVINO's own threads: start_async takes the inputs in this
        # thread, then infers without the GIL. (Python threads each calling infer() deadlocked
        # pyopenvino on a first concurrent call: a C++ static-init guard held against the GIL.)
        keys = [_shape_key(part) for part in parts] if self.config.static_shapes else []
        requests = [self._requests_for(keys[i] if keys else None)[i] for i in range(len(parts))]
        start = time.perf_counter()
        for request, part in zip(requests, parts, strict=True):
            request.start_async(part)
        for request in requests:
            request.wait()
        if keys:
            self._count_call(keys, time.perf_counter() - start)
        return torch.from_numpy(np.concatenate([r.get_output_tensor(0).data.copy() for r in requests]))

    def _requests_for(self, key: tuple | None) -> list[Any]:
        """The infer requests of the compile for inputs of shape ``key``: a static one (compiled
        now when its calls pay for it and the limit allows), else the dynamic one."""
        if key is None:
            return self._requests
        requests = self._static.get(key)
        if requests is None:
            if len(self._static) >= self.config.static_shapes or not (self._settled or compile_pays(
                    self._spent.get(key, 0.0), self._announced[key] * self._call_estimate_s(key), self._compile_s)):
                return self._requests
            requests = self._compile_static(key)
        return requests

    def _compile_static(self, key: tuple) -> list[Any]:
        start = time.perf_counter()
        model = self._model.clone()
        model.reshape({name: list(shape) for name, shape in key})
        with keep_signal_stack():
            compiled = self._core.compile_model(model, self.config.device, self._settings)
        requests = self._static[key] = [compiled.create_infer_request() for _ in self._requests]
        self._static_compile_s += time.perf_counter() - start
        self._compile_s = self._static_compile_s / len(self._static)
        self._spent.pop(key, None)
        return requests

    def _call_estimate_s(self, key: tuple) -> float:
        """A call of shape ``key`` on the dynamic compile, at the time a value its calls have taken
        (0 before any has run: the first call of a process is never compiled for)."""
        return self._dynamic_s / self._dynamic_values * _values(key) if self._dynamic_values else 0.0

    def _count_call(self, keys: list[tuple], seconds: float) -> None:
        """Book a call's time on the shapes it ran dynamic (by the share of the rows each part had)."""
        rows = [dict(key)[self.inputs[0]][0] for key in keys]
        for key, part_rows in zip(keys, rows, strict=True):
            if self._announced[key] > 0:
                self._announced[key] -= 1
            if key in self._static:
                continue
            share = seconds * part_rows / (sum(rows) or 1)
            self._spent[key] = self._spent.get(key, 0.0) + share
            self._dynamic_s += share
            self._dynamic_values += _values(key)

    def expect_calls(self, shapes: Iterable[Sequence[int]]) -> None:
        """Announce calls with every input of these shapes (a padded text batch's (rows, length)):
        with static shapes on, a shape's announced calls count towards paying for its compile."""
        if not self.config.static_shapes:
            return
        for shape in shapes:
            rows, rest = int(shape[0]), tuple(int(d) for d in shape[1:])
            for part in split_sizes(rows, len(self._requests)):  # the slices run() will cut the batch into
                self._announced[tuple((name, (part, *rest)) for name in sorted(self.inputs))] += 1

    def settle(self) -> None:
        """Compile every shape met so far and not yet compiled (most time spent first, up to the
        limit), and from now on each new shape on first meeting: the long run, where every shape
        has paid for its compile, and what a call costs from now on is its steady state."""
        self._settled = True
        for key in sorted(self._spent, key=self._spent.__getitem__, reverse=True):
            if len(self._static) >= self.config.static_shapes:
                break
            self._compile_static(key)

    def before_settling(self) -> OpenVinoModule | None:
        """With static shapes on, the same model serving every call on the dynamic compile, as a
        call that has not paid for a shape's compile meets it (its requests are shared, nothing is
        compiled again); None without static shapes."""
        if not self.config.static_shapes:
            return None
        view = copy.copy(self)
        view.config = OpenVinoConfig.from_dict({**self.config.to_dict(), "static_shapes": 0})
        return view

    def with_static_shapes(self, limit: int) -> OpenVinoModule:
        """The same graph, compiled again for each input shape whose calls pay for it, up to ``limit`` shapes."""
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


def _shape_key(feeds: Mapping[str, Any]) -> tuple:
    return tuple((name, tuple(np.shape(v))) for name, v in sorted(feeds.items()))


def _values(key: tuple) -> int:
    """How many values the inputs of shape ``key`` hold (what a call's time grows with)."""
    return sum(int(np.prod(shape)) for _, shape in key)
