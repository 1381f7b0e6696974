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
from accelkit.techniques.registry import BuildContext, Built, register_technique

__all__ = ["CompileConfig", "WarmedModule", "compile_model"]

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


class WarmedModule(nn.Module):
    """Holds a compiled callable; ``warm_up`` compiles it at build time so compile time is not timed."""

    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def warm_up(self, ctx: BuildContext) -> float:
        """Run the batch sizes the workload will see (full batch and a remainder of 1); seconds taken."""
        import time

        start = time.perf_counter()
        data = ctx.calib_data(2 * ctx.batch_size)
        for size in (ctx.batch_size, 1):
            ctx.workload.predict(self, data, ctx.settings.with_(batch_size=size))
        return round(time.perf_counter() - start, 2)


@register_technique("compile", group="runtime", description="torch.compile (inductor); compile time in "
                    "details.compile_s", accepts=("eager", "eager-lowp", "quantized"), produces="graph",
                    saveable=False)
def _compile(model: nn.Module, ctx: BuildContext) -> Built:
    runner = WarmedModule(compile_model(model, CompileConfig()))
    compile_s = runner.warm_up(ctx)
    return Built(runner, ctx.settings, {"compiler": "inductor", "compile_s": compile_s})
