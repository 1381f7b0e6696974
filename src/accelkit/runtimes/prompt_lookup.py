"""Prompt-lookup drafts: the tokens that followed the latest earlier occurrence of a row's last
n-gram, copied as a guess of what comes next (no draft model), for a loop that verifies them."""

from __future__ import annotations

import numpy as np

__all__ = ["lookup_draft"]


def lookup_draft(context: np.ndarray, tokens: int, ngram: int) -> np.ndarray:
    """Up to ``tokens`` ids after the latest earlier place where ``context``'s last n ids occur,
    trying n = ``ngram`` down to 1 (the longest match first); empty when none occurs or
    ``tokens`` < 1. ``context``: the row's ids so far (prompt and written), one dimension."""
    if tokens < 1:
        return context[:0]
    for n in range(min(ngram, len(context) - 1), 0, -1):
        # windows over the context less its last id: a match ends before the tail itself does
        windows = np.lib.stride_tricks.sliding_window_view(context[:-1], n)
        found = np.flatnonzero((windows == context[-n:]).all(axis=1))
        if found.size:
            start = int(found[-1]) + n
            return context[start:start + tokens]
    return context[:0]
