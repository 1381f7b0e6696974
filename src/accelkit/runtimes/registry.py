"""The runtimes by name, by the form of model they serve and by device, each registered by its own
module with ``@register_runtime`` (as torchao registers a handler per config type).

Every module of accelkit.runtimes is imported once on first look-up, so a new runtime is one file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from accelkit.errors import ConfigError, DeviceUnavailableError
from accelkit.registration import import_package_modules
from accelkit.runtimes.base import Runtime, ShipError, device_kind

__all__ = ["RUNTIMES", "get_runtime", "register_runtime", "runtime_forms", "runtime_of", "runtime_serving"]

RUNTIMES: dict[str, type[Runtime]] = {}
R = TypeVar("R", bound=type[Runtime])


def register_runtime(cls: R) -> R:
    """Class decorator: ``cls.name`` serves ``cls.family`` graphs on ``cls.devices``."""
    if not cls.name or not cls.form or not cls.family or not cls.model_file:
        raise ConfigError(f"runtime {cls.__name__}: set name, form, family and model_file")
    if cls.name in RUNTIMES and RUNTIMES[cls.name] is not cls:
        raise ConfigError(f"runtime {cls.name!r} is registered twice ({RUNTIMES[cls.name].__module__} and "
                          f"{cls.__module__}); rename one")
    RUNTIMES[cls.name] = cls
    return cls


_loaded = False


def _load_runtime_modules() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    import_package_modules(__file__, "accelkit.runtimes")


def get_runtime(name: str) -> type[Runtime]:
    """The runtime registered as ``name``; ConfigError listing the names otherwise."""
    _load_runtime_modules()
    if not isinstance(name, str) or name not in RUNTIMES:
        raise ConfigError(f"runtime {name!r} is not one of {sorted(RUNTIMES)}")
    return RUNTIMES[name]


def runtime_of(model: Any) -> Runtime:
    """The runtime serving ``model``: the model itself for a runtime object, the torch eager
    runtime for an nn.Module; ShipError for anything no runtime serves."""
    _load_runtime_modules()
    if isinstance(model, Runtime):
        return model
    for cls in RUNTIMES.values():
        adopted = cls.adopt(model)
        if adopted is not None:
            return adopted
    raise ShipError(f"no runtime serves a {type(model).__name__}; pass an nn.Module or a runtime "
                    f"({', '.join(sorted(RUNTIMES))})")


def runtime_serving(family: str, device: str) -> type[Runtime]:
    """The first available runtime executing ``family`` graphs on ``device`` ("cpu", "cuda:0" …);
    DeviceUnavailableError naming why each candidate cannot."""
    _load_runtime_modules()
    kind = device_kind(device)
    candidates = [c for c in RUNTIMES.values() if c.family == family and kind in c.devices]
    reasons = []
    for cls in candidates:
        reason = cls.unavailable_reason()
        if reason is None:
            return cls
        reasons.append(f"{cls.name}: {reason}")
    served = sorted({d for c in RUNTIMES.values() if c.family == family for d in c.devices})
    raise DeviceUnavailableError(f"no runtime runs {family} graphs on {device} here "
                                 f"({'; '.join(reasons) or f'{family} runs on {served}'})")


def runtime_forms(keep: Callable[[type[Runtime]], bool] = lambda cls: True) -> tuple[str, ...]:
    """The forms (techniques/registry.py FORMS) of the registered runtimes ``keep`` selects, in order."""
    _load_runtime_modules()
    return tuple(dict.fromkeys(c.form for c in RUNTIMES.values() if keep(c)))
