"""The contract every runtime keeps: called like the module it replaces, on a device, described by
a typed record, saved to a folder and loaded back from it without re-running anything.

A new runtime is one module in this package: a ``Runtime`` subclass decorated with
``register_runtime`` (accelkit.runtimes.registry).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from accelkit.errors import ConfigError

__all__ = ["Runtime", "RuntimeRecord", "ShipError", "counting_flops", "device_kind", "name_inputs"]


class ShipError(ConfigError):
    """A model that cannot be saved as it is (the message names why and what to choose instead)."""


@dataclass(frozen=True)
class RuntimeRecord:
    """What serves a model and how: goes into results.json and plan.json as ``to_dict()``."""

    runtime: str
    device: str
    precision: str
    streams: int
    threads: int | None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "device": self.device, "precision": self.precision,
                "streams": self.streams, "threads": self.threads, **self.extra}


def device_kind(device: str | torch.device) -> str:
    """"cuda" for "cuda:1": the part of a device name a runtime is chosen by."""
    return str(device).split(":", 1)[0].lower()


def counting_flops() -> bool:
    """True inside torch's FlopCounterMode (which cannot see inside a foreign runtime)."""
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

    return any("FlopCounter" in type(mode).__name__ for mode in _get_current_dispatch_mode_stack())


def name_inputs(args: Sequence[Any], kwargs: Mapping[str, Any], names: Sequence[str], what: str) -> dict[str, Any]:
    """The graph's inputs by name from positional and named arguments; ConfigError naming the missing ones."""
    feeds = dict(zip(names, args, strict=False))
    feeds.update({k: v for k, v in kwargs.items() if k in names})
    missing = [n for n in names if n not in feeds]
    if missing:
        raise ConfigError(f"{what} model needs inputs {list(names)}; missing {missing}")
    return feeds


class Runtime:
    """One way of running a model. Subclasses set the class attributes and implement ``run``,
    ``describe``, ``save``, ``load`` and ``serialized_size_bytes``.

    ``name``: the registry key written to plan.json; ``form``: what the technique registry calls
    a model this runtime serves (techniques/registry.py FORMS); ``family``: the engine it drives
    ("torch", "onnxruntime", "openvino", "tensorrt"): techniques ask for a family on a device;
    ``devices``: the device kinds it serves; ``model_file``: the file its save writes and its
    load needs; ``needs_baseline``: whether load rebuilds on a caller-given architecture.
    """

    name: ClassVar[str] = ""
    form: ClassVar[str] = ""
    family: ClassVar[str] = ""
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    model_file: ClassVar[str] = ""
    needs_baseline: ClassVar[bool] = False
    # True where the model runs on the engine's own threads, not torch's (accelkit._threads.torch_threads_beside)
    computes_outside_torch: ClassVar[bool] = False

    device: str = "cpu"
    # The float PyTorch model a foreign graph came from: run (and discarded) only under a FLOP
    # counter, which cannot see inside the runtime, so int8 results still get a roofline fraction.
    flop_reference: Any = None
    extra: dict[str, Any]  # facts the building step adds to describe() (quantization, calibration …)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when this runtime can run here, else why not (a missing package, no device)."""
        return None

    @classmethod
    def adopt(cls, model: Any) -> Runtime | None:
        """The runtime serving ``model`` when this class serves it, else None."""
        return model if isinstance(model, cls) else None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.flop_reference is not None and counting_flops():
            with torch.no_grad():
                self.flop_reference(*args, **kwargs)
        return self.run(*args, **kwargs)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def describe(self) -> RuntimeRecord:
        raise NotImplementedError

    def check_saveable(self) -> None:
        """ShipError when ``save`` would refuse this model as it is, naming why; writes nothing
        (a runtime that saves every model it serves keeps this default)."""

    def save(self, folder: Path) -> dict[str, Any]:
        """Write the runtime's files into ``folder``; return the plan.json fields ``load`` reads."""
        raise NotImplementedError

    @classmethod
    def load(cls, folder: Path, fields: Mapping[str, Any], *, baseline: Any = None) -> Runtime:
        """What ``save`` wrote (the caller verified the checksums). ``baseline``: the fp32
        architecture, for runtimes with ``needs_baseline``."""
        raise NotImplementedError

    @property
    def serialized_size_bytes(self) -> int:
        raise NotImplementedError

    def unwrap(self) -> Any:
        """What callers run: the runtime itself, or the nn.Module an adapter (torch eager) serves."""
        return self

    def expect_calls(self, shapes: Iterable[Sequence[int]]) -> None:
        """Announce the calls about to come, by the shape every input of each has (a padded text
        batch's ``(rows, length)``), so a runtime that prepares per shape (a compile of its own)
        can weigh what the preparation buys against what it costs. This default ignores them."""

    def settle(self) -> None:
        """Serve as in a long run from now on: finish the preparation deferred while serving (a
        shape's compile its calls have not yet paid for) and prepare each new shape on meeting it.
        ``Workload.predict`` calls it before every pass, so what is measured (speed and quality
        alike) is the long run; this default has nothing to do."""

    def before_settling(self) -> Runtime | None:
        """The model as calls meet it before ``settle``, where they are served otherwise than in
        the long run (another compile, which rounds differently): the same model, serving every
        call that way. ``bench`` scores quality on both and keeps the worse, so what it reports
        also holds for a one-off call. None (this default): every call is served alike."""
        return None

    def with_streams(self, streams: int | None) -> Runtime:
        """The same model served by ``streams`` side-by-side sessions, each on a slice of the batch
        (None: one per compute thread)."""
        raise ConfigError(f"the {self.name} runtime does not run parallel streams; put a runtime step "
                          "that does (onnx, int8-aware …) before parallel-streams")
