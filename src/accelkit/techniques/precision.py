"""Reduced-precision inference: bf16/fp16 autocast, or a full cast of the weights.

Autocast keeps fp32 weights and runs matmuls in the low dtype (safe, same size);
a full cast halves the weights' memory but also rounds layer norms and softmax.
bf16 pays off on CPUs with AVX512_BF16/AMX; fp16 on CPU only with AVX512_FP16.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from accelkit.config import Config
from accelkit.errors import ConfigError
from accelkit.runtimes.torch_eager import CastInputs
from accelkit.techniques.registry import BuildContext, register_technique
from accelkit.workloads.base import RunSettings

__all__ = ["PrecisionConfig", "apply_precision"]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class PrecisionConfig(Config):
    """``dtype``: "bf16" or "fp16"; ``mode``: "autocast" or "cast" (weights converted)."""

    dtype: str = "bf16"
    mode: str = "autocast"
    version: int = 1

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES:
            raise ConfigError(f"dtype={self.dtype!r}: expected one of {sorted(_DTYPES)}")
        if self.mode not in ("autocast", "cast"):
            raise ConfigError(f"mode={self.mode!r}: expected 'autocast' or 'cast'")


def apply_precision(model: nn.Module, settings: RunSettings, config: PrecisionConfig) -> tuple[nn.Module, RunSettings]:
    """Return the model and run settings for ``config``; the input model is not modified in autocast mode."""
    if config.mode == "autocast":
        return model, settings.with_(autocast=config.dtype)
    return CastInputs(model.to(_DTYPES[config.dtype]), _DTYPES[config.dtype]), settings


def _fp16_unavailable() -> str | None:
    # fp16 on CPU is emulated (slower than fp32) without AVX512_FP16/AMX-FP16: offer it only where it pays
    if torch.cuda.is_available():
        return None
    from accelkit.hardware import probe

    return None if probe()["recommend"].get("fp16_on_cpu") else "fp16 is emulated on this CPU (no AVX512_FP16)"


# autocast is a run setting: it composes with any torch model, and ONNX Runtime voids it
_AUTOCAST_FORMS = ("eager", "dynamic")


@register_technique("bf16", group="precision", description="bf16 autocast (fp32 weights)",
                    accepts=_AUTOCAST_FORMS, effects=("autocast",), compute_dtype="bf16")
def _bf16(model: nn.Module, ctx: BuildContext):
    return apply_precision(model, ctx.settings, PrecisionConfig("bf16", "autocast"))


@register_technique("bf16-cast", group="precision", description="weights and activations cast to bf16 "
                    "(half the weight memory)", accepts=_AUTOCAST_FORMS, produces="eager-lowp", compute_dtype="bf16")
def _bf16_cast(model: nn.Module, ctx: BuildContext):
    return apply_precision(model, ctx.settings, PrecisionConfig("bf16", "cast"))


@register_technique("fp16", group="precision", description="fp16 autocast (CUDA, or CPUs with AVX512_FP16)",
                    accepts=_AUTOCAST_FORMS, effects=("autocast",), compute_dtype="bf16", available=_fp16_unavailable)
def _fp16(model: nn.Module, ctx: BuildContext):
    return apply_precision(model, ctx.settings, PrecisionConfig("fp16", "autocast"))


@register_technique("fp16-cast", group="precision", description="weights cast to fp16 (CUDA, or CPUs with "
                    "AVX512_FP16)", accepts=_AUTOCAST_FORMS, produces="eager-lowp", compute_dtype="bf16",
                    available=_fp16_unavailable)
def _fp16_cast(model: nn.Module, ctx: BuildContext):
    return apply_precision(model, ctx.settings, PrecisionConfig("fp16", "cast"))
