"""Rows of one batch split across parallel streams (sessions or infer requests side by side).

Each row is computed alone either way, so the outputs do not change; the streams keep every
core busy where one session's ops are too small to.
"""

from __future__ import annotations

from typing import Any

__all__ = ["split_rows"]


def split_rows(feeds: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """``n`` contiguous slices of every input's rows (batch dimension first), one per stream."""
    rows = len(next(iter(feeds.values())))
    bounds = [rows * i // n for i in range(n + 1)]
    return [{k: v[lo:hi] for k, v in feeds.items()} for lo, hi in zip(bounds, bounds[1:], strict=False)]
