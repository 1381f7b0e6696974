"""Mixed precision by autocast: matmuls and convolutions in bf16 or fp16, weights and optimizer
state kept in fp32. Buys: bf16 GEMMs (AMX / AVX512-BF16 on CPU, tensor cores on GPU). Costs: casts
of every weight per GEMM; fp16 needs a GradScaler (overflowing steps are skipped) and is emulated,
~50x slower, on a CPU without native fp16 arithmetic."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from accelkit.config import Config
from accelkit.errors import ConfigError
from accelkit.train.techniques.registry import TrainVariant, register_training_technique

__all__ = ["AutocastConfig"]


@dataclass
class AutocastConfig(Config):
    dtype: str = "bf16"  # "bf16" | "fp16" (fp16 adds a GradScaler)
    version: int = 1

    def __post_init__(self) -> None:
        if self.dtype not in ("bf16", "fp16"):
            raise ConfigError(f"autocast dtype={self.dtype!r}: expected 'bf16' or 'fp16'")


@register_training_technique(
    "autocast", group="precision", config=AutocastConfig,
    description="bf16/fp16 autocast of GEMMs and convolutions, fp32 weights; fp16 with a GradScaler. Buys the "
                "low-precision GEMM rate; costs a weight cast per GEMM")
def apply_autocast(variant: TrainVariant, config: AutocastConfig) -> TrainVariant:
    return dataclasses.replace(variant, precision=config.dtype)
