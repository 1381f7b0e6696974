"""Rows of one batch split across parallel streams (sessions or infer requests side by side).

Each row is computed alone either way, so the outputs do not change; the streams keep every
core busy where one session's ops are too small to.
"""

from __future__ import annotations

from typing import Any

__all__ = ["split_rows", "split_sizes"]


def split_sizes(rows: int, n: int) -> list[int]:
    """How many rows each slice of a batch of ``rows`` holds across ``n`` streams: ``n`` contiguous
    slices, or the whole batch as one when there are fewer rows than streams."""
    if n == 1 or rows < n:
        return [rows]
    return [rows * (i + 1) // n - rows * i // n for i in range(n)]


def split_rows(feeds: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Every input's rows (batch dimension first) cut as ``split_sizes`` says, one slice per stream."""
    slices, start = [], 0
    for size in split_sizes(len(next(iter(feeds.values()))), n):
        slices.append({k: v[start : start + size] for k, v in feeds.items()})
        start += size
    return slices
