"""torch.compile (inductor): fuse elementwise ops and pick faster kernels for the shapes seen.

Buys steady-state speed with unchanged numerics (up to op reordering); costs a compile on
first call of each new shape family (tens of seconds on a small CPU), reported separately.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from accelkit.config import Config
from accelkit.errors import ConfigError

__all__ = ["CompileConfig", "compile_model"]

_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class CompileConfig(Config):
    """``dynamic``: None lets inductor mark a dimension dynamic after it first changes (text lengths)."""

    mode: str = "default"
    dynamic: bool | None = None
    fullgraph: bool = False
    version: int = 1

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ConfigError(f"mode={self.mode!r}: expected one of {_MODES}")


def compile_model(model: nn.Module | Callable[..., Any], config: CompileConfig | None = None) -> Callable[..., Any]:
    """Compile ``model`` (in place for modules) with the config; compilation happens on the first call.

    Modules use ``nn.Module.compile`` rather than wrapping in ``torch.compile(module)``, which
    fires global module hooks (FLOP counters, profilers) twice.
    """
    config = config or CompileConfig()
    kwargs = {"mode": config.mode, "dynamic": config.dynamic, "fullgraph": config.fullgraph}
    if isinstance(model, nn.Module):
        model.compile(**kwargs)
        return model
    return torch.compile(model, **kwargs)
