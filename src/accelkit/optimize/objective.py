"""The score a search maximises for its objective: speed-up, or inverse megabytes."""

from __future__ import annotations

from accelkit.report.results import VariantResult

__all__ = ["objective_score"]


def objective_score(rec: VariantResult | dict, objective: str) -> float | None:
    """Higher is better: speed-up for throughput/latency, inverse MB for memory/size."""
    get = rec.get if isinstance(rec, dict) else lambda k: getattr(rec, k)
    if get("error"):
        return None
    if objective in ("throughput", "latency"):
        return get("speedup")
    value = get("peak_memory_mb" if objective == "memory" else "size_mb")
    return 1.0 / value if value else None
