"""torch.compile (inductor) of the model's forward, attention on SDPA's math backend so the
backward compiles too. Buys: fused elementwise ops and fewer kernel launches. Costs: a compile on
the first step(s) and a recompile per new input shape (padding per batch makes several)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from accelkit.config import Config
from accelkit.train.techniques.registry import TrainVariant, register_training_technique

__all__ = ["CompileConfig"]


@dataclass
class CompileConfig(Config):
    version: int = 1


@register_training_technique(
    "compile", group="compile", config=CompileConfig,
    description="torch.compile (inductor) of the forward; buys fused kernels, costs compile time and a "
                "recompile per new shape")
def apply_compile(variant: TrainVariant, config: CompileConfig) -> TrainVariant:
    return dataclasses.replace(variant, compile=True)
