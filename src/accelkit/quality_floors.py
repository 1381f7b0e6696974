"""Quality floors: a minimum for any quality metric, beside the budget on the primary metric's drop.

A mean can hide a few ruined items (an int8 plan at cosine mean 0.997 with one sentence at 0.96);
``--min-quality cosine_min=0.97`` makes such a plan miss the budget, in ``bench`` and in the search.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from accelkit.errors import ConfigError

__all__ = ["check_floor_metrics", "check_quality_floors", "floors_missed", "floors_text", "parse_quality_floors"]


def parse_quality_floors(items: Iterable[str] | None) -> dict[str, float] | None:
    """``["cosine_min=0.97", "top10_agreement=0.9"]`` → ``{"cosine_min": 0.97, ...}`` (None for none)."""
    floors: dict[str, float] = {}
    for item in items or ():
        name, sep, value = str(item).partition("=")
        name = name.strip()
        try:
            number = float(value) if sep and name else math.nan
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise ConfigError(f"--min-quality {item!r}: expected METRIC=NUMBER, e.g. cosine_min=0.97")
        floors[name] = number
    return check_quality_floors(floors) if floors else None


def check_quality_floors(floors: Mapping[str, float] | None) -> dict[str, float] | None:
    """The floors as a plain dict, or a ConfigError naming the bad entry."""
    if floors is None:
        return None
    if not isinstance(floors, Mapping):
        raise ConfigError(f"min_quality={floors!r}: expected a mapping of metric name to minimum, e.g. "
                          "{'cosine_min': 0.97}")
    out = {}
    for name, value in floors.items():
        if not isinstance(name, str) or not name or isinstance(value, bool) \
                or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"min_quality {name!r}: {value!r}: expected a metric name and a finite minimum, "
                              "e.g. cosine_min=0.97")
        out[name] = float(value)
    return out


def check_floor_metrics(floors: Mapping[str, float] | None, quality: Mapping[str, float], workload: str) -> None:
    """Every floor names a metric the workload reports (checked on the baseline's quality)."""
    unknown = sorted(set(floors or ()) - set(quality))
    if unknown:
        raise ConfigError(f"--min-quality {', '.join(unknown)}: not a metric {workload} reports; "
                          f"choose from {', '.join(sorted(quality))}")


def floors_missed(quality: Mapping[str, float] | None, floors: Mapping[str, float] | None) -> list[str]:
    """One phrase per floor the quality falls below, e.g. ``'cosine_min 0.963 < 0.97'``."""
    if not floors:
        return []
    quality = quality or {}
    return [f"{name} {quality[name]:.4g} < {floor:g}" if name in quality else f"{name} not measured"
            for name, floor in floors.items() if not (name in quality and quality[name] >= floor)]


def floors_text(floors: Mapping[str, float] | None) -> str:
    """``'cosine_min ≥ 0.97, top10_agreement ≥ 0.9'`` for titles and messages ('' for none)."""
    return ", ".join(f"{name} ≥ {floor:g}" for name, floor in (floors or {}).items())
