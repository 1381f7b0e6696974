"""Fused AdamW: one kernel updates every parameter instead of a foreach loop over tensors. Buys:
less optimizer time and memory traffic on models with many small tensors. Costs: nothing in
results (the same update)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from accelkit.config import Config
from accelkit.train.techniques.registry import TrainVariant, register_training_technique

__all__ = ["FusedAdamWConfig"]


@dataclass
class FusedAdamWConfig(Config):
    version: int = 1


@register_training_technique(
    "fused-adamw", group="optimizer", config=FusedAdamWConfig,
    description="AdamW(fused=True); buys a faster optimizer step, same update")
def apply_fused_adamw(variant: TrainVariant, config: FusedAdamWConfig) -> TrainVariant:
    return dataclasses.replace(variant, fused=True)
