"""Registers the foundation variants: baseline, dynamic padding, bf16/fp16 autocast."""

from __future__ import annotations

from accelkit.techniques.padding import apply_dynamic_padding
from accelkit.techniques.precision import PrecisionConfig, apply_precision
from accelkit.variants import register_variant


def _is_text(workload) -> bool:
    return hasattr(workload, "tokenizer")


@register_variant("baseline", description="fp32 eager, fixed-length padding: the reference")
def _baseline(model, settings, workload):
    return model, settings


@register_variant(
    "dynamic-padding",
    description="length-sorted batches padded to their longest sentence",
    applies_to=_is_text,
)
def _dynamic_padding(model, settings, workload):
    return model, apply_dynamic_padding(settings)


@register_variant("bf16", description="bf16 autocast (fp32 weights)", compute_dtype="bf16")
def _bf16(model, settings, workload):
    return apply_precision(model, settings, PrecisionConfig("bf16", "autocast"))
