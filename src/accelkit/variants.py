"""The registry of named inference variants that ``accelkit bench`` and ``optimize`` use.

A variant turns (baseline model copy, run settings, workload) into a faster
(model, settings). Names say the technique; ``a+b`` composes left to right.
Technique modules register themselves here with ``register_variant``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from accelkit.errors import UnknownVariantError
from accelkit.workloads.base import RunSettings, Workload

__all__ = ["Variant", "build_variant", "list_variants", "register_variant", "VARIANTS"]

ApplyFn = Callable[[nn.Module, RunSettings, Workload], tuple[Any, RunSettings]]


@dataclass
class Variant:
    name: str
    apply: ApplyFn
    description: str = ""
    applies_to: Callable[[Workload], bool] = lambda w: True
    compute_dtype: str = "fp32"  # which roofline ceiling applies: fp32 | bf16 | int8
    expensive: bool = False  # needs training (distillation, fine-tuning): the search runs it last
    tags: tuple[str, ...] = field(default_factory=tuple)


VARIANTS: dict[str, Variant] = {}


def register_variant(
    name: str,
    *,
    description: str = "",
    applies_to: Callable[[Workload], bool] | None = None,
    compute_dtype: str = "fp32",
    expensive: bool = False,
) -> Callable[[ApplyFn], ApplyFn]:
    """Decorator registering ``fn(model, settings, workload) -> (model, settings)`` as ``name``."""

    def deco(fn: ApplyFn) -> ApplyFn:
        VARIANTS[name] = Variant(name, fn, description, applies_to or (lambda w: True), compute_dtype, expensive)
        return fn

    return deco


def _load_technique_modules() -> None:
    # Import for the side effect of registration; each technique module lists its own variants.
    import importlib
    import importlib.util

    for mod in (
        "accelkit.techniques.builtin_variants",
        "accelkit.techniques.inference_variants",
        "accelkit.techniques.compress_variants",
        "accelkit.techniques.early_exit_variants",
    ):
        if importlib.util.find_spec(mod) is not None:
            importlib.import_module(mod)


def list_variants(workload: Workload | None = None) -> list[str]:
    """Names of the variants that apply to ``workload`` (all when None), baseline first."""
    _load_technique_modules()
    names = [n for n, v in VARIANTS.items() if workload is None or v.applies_to(workload)]
    return sorted(names, key=lambda n: (n != "baseline", n))


def _lookup(part: str, workload: Workload) -> Variant:
    _load_technique_modules()
    variant = VARIANTS.get(part)
    if variant is None or not variant.applies_to(workload):
        raise UnknownVariantError(
            f"variant {part!r} is not available for workload {workload.name!r}; "
            f"run `accelkit bench --workload {workload.name} --list` to see the names"
        )
    return variant


def build_variant(
    name: str, baseline: nn.Module, settings: RunSettings, workload: Workload
) -> tuple[Any, RunSettings, str]:
    """Apply the ``+``-joined techniques of ``name`` to a copy of ``baseline``.

    Returns (model, settings, compute_dtype). The baseline itself is never modified.
    """
    parts = [p.strip() for p in name.split("+") if p.strip()]
    if not parts:
        raise UnknownVariantError(f"variant {name!r} is empty; name one, e.g. 'bf16' or 'dynamic-padding+bf16'")
    variants = [_lookup(p, workload) for p in parts]
    model: Any = copy.deepcopy(baseline)
    dtype = "fp32"
    for v in variants:
        model, settings = v.apply(model, settings, workload)
        if v.compute_dtype != "fp32":
            dtype = v.compute_dtype
    return model, settings, dtype


def check_variants(names: list[str], workload: Workload) -> None:
    """Raise UnknownVariantError for the first name that does not resolve."""
    for name in names:
        for part in name.split("+"):
            _lookup(part.strip(), workload)
