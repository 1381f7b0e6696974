"""Packed dropout: in a compiled training step, each dropout mask is drawn from 64-bit random words
cut into four 16-bit draws, instead of one random float per element.

Buys: inductor's CPU random number generator runs one Philox block per element for ``F.dropout``
(about 5 ns an element on a 2-core Zen 4), four times the work of drawing 16-bit values; on a
6-layer, 384-wide BERT classifier at batch 16 the dropout masks were about 14% of a bf16 compiled
step, and packed masks made the step about 1.1x faster. Costs: the keep probability is rounded to
1/65,536 (the scale uses the rounded value, so the expectation is unchanged) and the masks are a
different random stream from eager dropout's: the same distribution, not the same draws. Only
``F.dropout`` in training mode is replaced (``nn.Dropout`` calls it); attention dropout inside
``scaled_dot_product_attention`` keeps the kernel's own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from accelkit.config import Config
from accelkit.train.techniques.registry import TrainVariant, register_training_technique

__all__ = ["PackedDropout", "PackedDropoutConfig", "packed_dropout"]

_LEVELS = 1 << 16  # a 16-bit draw per element


@dataclass
class PackedDropoutConfig(Config):
    version: int = 1


def packed_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """``x`` with each element zeroed with probability ``p`` (rounded to 1/65,536) and the rest
    scaled by 1/(1 - p): dropout whose mask takes four elements from each 64-bit random word."""
    level = round(p * _LEVELS)
    if level == 0:
        return x
    if level >= _LEVELS:
        return torch.zeros_like(x)
    n = x.numel()
    words = torch.randint(-(1 << 63), (1 << 63) - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
    # int16 draws are uniform over [-32768, 32767]: keep those at or above the p-quantile
    keep = words.view(torch.int16)[:n].view(x.shape) >= level - _LEVELS // 2
    return x * keep.to(x.dtype) * (_LEVELS / (_LEVELS - level))


class PackedDropout(TorchFunctionMode):
    """Within its block, ``F.dropout`` in training mode (not in place) runs as ``packed_dropout``;
    every other call, and dropout in eval mode, runs as it would."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is F.dropout:
            names = ("input", "p", "training", "inplace")
            bound = {**dict(zip(names, args, strict=False)), **kwargs}
            p, training = bound.get("p", 0.5), bound.get("training", True)
            if training and not bound.get("inplace", False) and 0.0 < p < 1.0:
                return packed_dropout(bound["input"], float(p))
        return func(*args, **kwargs)


@register_training_technique(
    "packed-dropout", group="dropout", config=PackedDropoutConfig, requires=("compile",),
    description="dropout masks from 16-bit draws packed four to a random word in the compiled step; buys "
                "cheaper masks on CPU, costs a different random stream (same distribution)")
def apply_packed_dropout(variant: TrainVariant, config: PackedDropoutConfig) -> TrainVariant:
    return dataclasses.replace(variant, packed_dropout=True)
