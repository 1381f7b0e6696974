"""Named variants for ``accelkit bench`` and ``optimize``: ``default`` plus every registered
technique, ``a+b`` composing them left to right.

The descriptors live beside each technique (``accelkit.techniques.registry``); this module
resolves names against a workload and builds them.
"""

from __future__ import annotations

from accelkit.errors import UnknownVariantError
from accelkit.techniques.registry import (
    BASELINE,
    BASELINE_ALIASES,
    Built,
    Technique,
    build_plan,
    get_technique,
    list_techniques,
)
from accelkit.workloads.base import Workload

__all__ = ["Built", "Technique", "build_variant", "check_variants", "get_technique", "list_variants"]


def list_variants(workload: Workload | None = None) -> list[str]:
    """Names of the variants that apply to ``workload`` (all when None), the default run first."""
    return [BASELINE, *(t.name for t in list_techniques(workload))]


# the ``+``-joined techniques of a name applied to a copy of the baseline (``default`` alone: the
# copy); the user's budget reaches the techniques that tune themselves
build_variant = build_plan


def check_variants(names: list[str], workload: Workload) -> None:
    """Raise UnknownVariantError for the first name that does not resolve or cannot be composed."""
    from accelkit.techniques.registry import composition_error

    for name in names:
        parts = [p.strip() for p in name.split("+") if p.strip() and p.strip() not in BASELINE_ALIASES]
        if not parts and name.strip() not in BASELINE_ALIASES:
            raise UnknownVariantError(f"variant {name!r} is empty; name one, e.g. 'bf16' or 'dynamic-padding+bf16'")
        for part in parts:
            get_technique(part, workload)
        why = composition_error(parts) if len(parts) > 1 else None
        if why:
            raise UnknownVariantError(f"variant {name!r} cannot be built: {why}")
