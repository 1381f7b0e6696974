"""Named variants for ``accelkit bench`` and ``optimize``: ``baseline`` plus every registered
technique, ``a+b`` composing them left to right.

The descriptors live beside each technique (``accelkit.techniques.registry``); this module
resolves names against a workload and builds them.
"""

from __future__ import annotations

from torch import nn

from accelkit.errors import UnknownVariantError
from accelkit.techniques.registry import (
    Built,
    Technique,
    build_plan,
    get_technique,
    list_techniques,
)
from accelkit.workloads.base import RunSettings, Workload

__all__ = ["Built", "Technique", "build_variant", "check_variants", "get_technique", "list_variants"]


def list_variants(workload: Workload | None = None) -> list[str]:
    """Names of the variants that apply to ``workload`` (all when None), baseline first."""
    return ["baseline", *(t.name for t in list_techniques(workload))]


def build_variant(
    name: str,
    baseline: nn.Module,
    settings: RunSettings,
    workload: Workload,
    *,
    max_quality_drop: float | None = None,
    objective: str = "throughput",
) -> Built:
    """Apply the ``+``-joined techniques of ``name`` to a copy of ``baseline`` (never modified).

    ``max_quality_drop`` reaches the techniques that tune themselves (None: their defaults).
    """
    if name == "baseline":
        import copy

        return Built(copy.deepcopy(baseline), settings)
    return build_plan(name, baseline, settings, workload, max_quality_drop=max_quality_drop, objective=objective)


def check_variants(names: list[str], workload: Workload) -> None:
    """Raise UnknownVariantError for the first name that does not resolve or cannot be composed."""
    from accelkit.techniques.registry import composition_error

    for name in names:
        parts = [p.strip() for p in name.split("+") if p.strip() and p.strip() != "baseline"]
        if not parts and name.strip() != "baseline":
            raise UnknownVariantError(f"variant {name!r} is empty; name one, e.g. 'bf16' or 'dynamic-padding+bf16'")
        for part in parts:
            get_technique(part, workload)
        why = composition_error(parts) if len(parts) > 1 else None
        if why:
            raise UnknownVariantError(f"variant {name!r} cannot be built: {why}")
