"""Packed dropout: in a compiled training step, each dropout mask is drawn from 64-bit random words
cut into four 16-bit draws, instead of one random float per element.

Buys: inductor's CPU random number generator runs one Philox block per element for ``F.dropout``
(about 5 ns an element on a 2-core Zen 4), four times the work of drawing 16-bit values; on a
6-layer, 384-wide BERT classifier at batch 16 the hidden states' dropout masks were about 14% of a
bf16 compiled step, and packing them made the step about 1.1x faster; packing the attention
weights' masks too, another 1.1x. Costs: the keep probability is rounded to 1/65,536 (the scale
uses the rounded value, so the expectation is unchanged) and the masks are a different random
stream from eager dropout's: the same distribution, not the same draws. Replaced in training mode:
``F.dropout`` (``nn.Dropout`` calls it) and ``scaled_dot_product_attention`` with ``dropout_p``
> 0, which then runs as its math backend (softmax in float32) with a packed mask on the weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from accelkit.config import Config
from accelkit.train.techniques.registry import TrainVariant, register_training_technique

__all__ = ["PackedDropout", "PackedDropoutConfig", "packed_dropout", "packed_dropout_masks"]

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


def _attention_with_packed_dropout(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                                   attn_mask: torch.Tensor | None = None, dropout_p: float = 0.0,
                                   is_causal: bool = False, scale: float | None = None,
                                   enable_gqa: bool = False) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` as its math backend computes it (softmax in float32),
    with the attention weights dropped by ``packed_dropout``."""
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        repeat = query.shape[-3] // key.shape[-3]
        key, value = key.repeat_interleave(repeat, -3), value.repeat_interleave(repeat, -3)
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    scores = (query @ key.transpose(-2, -1)).float() * scale
    if is_causal:
        causal = torch.ones(query.shape[-2], key.shape[-2], dtype=torch.bool, device=query.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool \
            else scores + attn_mask
    # rows with every key masked get zeros, as sdpa's math path gives them (not NaN)
    probs = torch.softmax(scores, dim=-1).nan_to_num(0.0).to(value.dtype)
    return packed_dropout(probs, dropout_p) @ value


class PackedDropout(TorchFunctionMode):
    """Within its block, ``F.dropout`` in training mode (not in place) runs as ``packed_dropout``,
    and ``F.scaled_dot_product_attention`` with ``dropout_p`` > 0 as its math with packed masks;
    every other call, and both without dropout, run as they would."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
            bound = {**dict(zip(names, args, strict=False)), **kwargs}
            if 0.0 < bound.get("dropout_p", 0.0) < 1.0:
                return _attention_with_packed_dropout(**bound)
        if func is F.dropout:
            names = ("input", "p", "training", "inplace")
            bound = {**dict(zip(names, args, strict=False)), **kwargs}
            p, training = bound.get("p", 0.5), bound.get("training", True)
            if training and not bound.get("inplace", False) and 0.0 < p < 1.0:
                return packed_dropout(bound["input"], float(p))
        return func(*args, **kwargs)


def packed_dropout_masks(enabled: bool) -> contextlib.AbstractContextManager:
    """``PackedDropout()`` around a (compiled) forward when ``enabled``, else nothing: dynamo traces
    the mode's replacements into the graph."""
    return PackedDropout() if enabled else contextlib.nullcontext()


@register_training_technique(
    "packed-dropout", group="dropout", config=PackedDropoutConfig, requires=("compile",),
    description="dropout masks from 16-bit draws packed four to a random word in the compiled step; buys "
                "cheaper masks on CPU, costs a different random stream (same distribution)")
def apply_packed_dropout(variant: TrainVariant, config: PackedDropoutConfig) -> TrainVariant:
    return dataclasses.replace(variant, packed_dropout=True)
