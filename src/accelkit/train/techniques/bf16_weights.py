"""bf16 weights: parameters, gradients and AdamW state held in bf16 (with bf16 autocast). Buys: no
per-GEMM weight casts and half the optimizer's memory traffic. Costs: an update under half a bf16
step of its weight (~0.4%) is lost, so a long run at a small LR stalls where fp32 weights would
not; compare the validation loss beside the speed."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from accelkit.config import Config
from accelkit.errors import ConfigError
from accelkit.train.techniques.registry import TrainVariant, register_training_technique

__all__ = ["Bf16WeightsConfig"]


@dataclass
class Bf16WeightsConfig(Config):
    version: int = 1


@register_training_technique(
    "bf16-weights", group="weights", config=Bf16WeightsConfig, requires=("autocast",),
    description="weights, gradients and AdamW state in bf16; buys no weight casts and half the optimizer "
                "traffic, costs updates below bf16's resolution (a small LR stalls)")
def apply_bf16_weights(variant: TrainVariant, config: Bf16WeightsConfig) -> TrainVariant:
    if variant.precision != "bf16":
        raise ConfigError(f"bf16-weights runs under bf16 autocast, not {variant.precision}; put "
                          "{'technique': 'autocast', 'config': {'dtype': 'bf16'}} before it")
    return dataclasses.replace(variant, bf16_weights=True)
