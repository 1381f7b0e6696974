"""Weight-only int8/int4 (torchao): weights stored in low bits, dequantized inside the matmul.

Buys memory bandwidth, so it pays for memory-bound work such as token-by-token generation
with weights larger than cache; costs accuracy at 4 bits and speed on compute-bound batches.
On CPU this torchao build has no packed int4 kernel: int4 values sit in int8 containers.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from accelkit._lazy import require
from accelkit.config import Config
from accelkit.errors import ConfigError
from accelkit.techniques.registry import BuildContext, Built, register_technique

__all__ = ["WeightOnlyConfig", "quantize_weight_only_"]


@dataclass
class WeightOnlyConfig(Config):
    """``bits``: 8 (per-channel) or 4 (per group of ``group_size`` input channels)."""

    bits: int = 8
    group_size: int = 32
    version: int = 1

    def __post_init__(self) -> None:
        if self.bits not in (4, 8):
            raise ConfigError(f"bits={self.bits}: expected 8 or 4")
        if self.group_size not in (16, 32, 64, 128, 256):
            raise ConfigError(f"group_size={self.group_size}: expected one of 16, 32, 64, 128, 256")


def quantize_weight_only_(
    model: nn.Module,
    config: WeightOnlyConfig | None = None,
    filter_fn: Callable[[nn.Module, str], bool] | None = None,
) -> dict:
    """Quantize the weights of the selected Linears in place; returns a report for ``accelkit_details``.

    Linears whose input width is not a multiple of the group size stay in float (listed in the report).
    """
    config = config or WeightOnlyConfig()
    import torch

    tao = require("torchao.quantization", "torchao")
    selected, skipped = [], []
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.Linear) or (filter_fn is not None and not filter_fn(mod, name)):
            continue
        (selected if config.bits == 8 or mod.in_features % config.group_size == 0 else skipped).append(name)
    if not selected:
        raise ConfigError("no nn.Linear layer to quantize: weight-only int8/int4 needs Linear layers")
    if config.bits == 8:
        qconfig = tao.Int8WeightOnlyConfig()
    else:
        from torchao.quantization.granularity import PerGroup

        qconfig = tao.IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(config.group_size))
    chosen = set(selected)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tao.quantize_(model, qconfig, filter_fn=lambda mod, fqn: fqn in chosen)
    return {"weight_bits": config.bits, "quantized_layers": len(selected), "kept_float": skipped,
            "group_size": config.group_size if config.bits == 4 else None}


@register_technique("int8-weight-only", group="precision", description="torchao int8 weight-only Linear "
                    "(memory-bound decoding)", produces="quantized", saveable=False)  # torchao tensors: no saved form
def _int8_weight_only(model: nn.Module, ctx: BuildContext) -> Built:
    return Built(model, ctx.settings, quantize_weight_only_(model, WeightOnlyConfig(bits=8)))


@register_technique("int4-weight-only", group="precision", description="torchao int4 weight-only Linear, "
                    "group size 32", produces="quantized", saveable=False)
def _int4_weight_only(model: nn.Module, ctx: BuildContext) -> Built:
    return Built(model, ctx.settings, quantize_weight_only_(model, WeightOnlyConfig(bits=4)))
