"""Prompt-lookup drafts: the tokens that followed the latest earlier occurrence of a row's last
n-gram, copied as a guess of what comes next (no draft model), for a loop that verifies them; and
``NgramStore``, the same guess read from the model's own earlier writing (its greedy continuations
of calibration prompts), taken where it matches more of the row's last ids."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from accelkit._atomic import atomic_write_bytes
from accelkit.errors import ConfigError

__all__ = ["NgramStore", "best_draft", "lookup_draft", "lookup_match"]


def lookup_draft(context: np.ndarray, tokens: int, ngram: int) -> np.ndarray:
    """Up to ``tokens`` ids after the latest earlier place where ``context``'s last n ids occur,
    trying n = ``ngram`` down to 1 (the longest match first); empty when none occurs or
    ``tokens`` < 1. ``context``: the row's ids so far (prompt and written), one dimension."""
    return lookup_match(context, tokens, ngram)[0]


def lookup_match(context: np.ndarray, tokens: int, ngram: int) -> tuple[np.ndarray, int]:
    """``lookup_draft``'s ids and the length n of the match they follow (0: none)."""
    if tokens < 1 or len(context) < 2:
        return context[:0], 0
    # every earlier place of the last id, then each grown backwards: one pass over the context
    # (a 2-core Zen 4: ~3 us a call for 80 ids, against ~45 us matching windows for each n)
    best, best_end = 0, -1
    for end in np.flatnonzero(context[:-1] == context[-1])[::-1].tolist():
        n = 1
        while n < ngram and n <= end and context[end - n] == context[-1 - n]:
            n += 1
        if n > best:
            best, best_end = n, end
            if n >= ngram:
                break
    return (context[best_end + 1:best_end + 1 + tokens], best) if best else (context[:0], 0)


class NgramStore:
    """For each run of 1 to ``ngram`` ids seen in some sequences, the continuation of up to
    ``tokens`` ids that most often followed it there: what a model wrote after the same ids
    before. Built from the model's greedy continuations of calibration prompts, it guesses the
    loops and phrases a model falls into before the row itself has repeated them."""

    file_name = "ngram_store.json"

    def __init__(self, table: dict[tuple[int, ...], np.ndarray], ngram: int, tokens: int) -> None:
        self.table, self.ngram, self.tokens = table, ngram, tokens

    @classmethod
    def from_sequences(cls, sequences: Iterable[Iterable[int]], ngram: int = 3, tokens: int = 16) -> NgramStore:
        """The store of ``sequences`` (each a row's ids: prompt and continuation)."""
        if not 1 <= ngram <= 16 or not 1 <= tokens <= 64:
            raise ConfigError(f"ngram={ngram}, tokens={tokens}: expected 1-16 and 1-64")
        counts: dict[tuple[int, ...], Counter] = defaultdict(Counter)
        for seq in sequences:
            ids = [int(i) for i in seq]
            for end in range(len(ids) - 1):
                after = tuple(ids[end + 1:end + 1 + tokens])
                for n in range(1, min(ngram, end + 1) + 1):
                    counts[tuple(ids[end + 1 - n:end + 1])][after] += 1
        table = {key: np.asarray(_most_frequent_path(c), dtype=np.int64) for key, c in counts.items()}
        return cls(table, ngram, tokens)

    def __len__(self) -> int:
        return len(self.table)

    def match(self, context: np.ndarray, tokens: int) -> tuple[np.ndarray, int]:
        """Up to ``tokens`` ids stored after ``context``'s last n ids, the longest n stored first,
        and that n (0: none stored)."""
        if tokens >= 1:
            for n in range(min(self.ngram, len(context)), 0, -1):
                found = self.table.get(tuple(context[-n:].tolist()))
                if found is not None:
                    return found[:tokens], n
        return context[:0], 0

    def save(self, path: Path) -> None:
        entries = [[list(key), found.tolist()] for key, found in self.table.items()]
        atomic_write_bytes(path, json.dumps({"ngram": self.ngram, "tokens": self.tokens, "entries": entries},
                                            separators=(",", ":")).encode())

    @classmethod
    def load(cls, path: Path) -> NgramStore:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            table = {tuple(int(i) for i in key): np.asarray(found, dtype=np.int64) for key, found in data["entries"]}
            return cls(table, int(data["ngram"]), int(data["tokens"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: not a readable n-gram store ({exc}); export the model again") from None


def _most_frequent_path(continuations: Counter) -> list[int]:
    """The continuation read id by id: at each place the id that most of the continuations agreeing
    so far have there (ties: the one seen first, so the same sequences give the same store)."""
    path: list[int] = []
    agreeing = list(continuations.items())
    while True:
        votes: dict[int, int] = {}
        for seq, count in agreeing:
            if len(seq) > len(path):
                votes[seq[len(path)]] = votes.get(seq[len(path)], 0) + count
        if not votes:
            return path
        path.append(max(votes, key=votes.__getitem__))  # max keeps the first of equal counts
        agreeing = [(seq, count) for seq, count in agreeing if len(seq) > len(path) - 1 and seq[len(path) - 1] == path[-1]]


def best_draft(context: np.ndarray, tokens: int, ngram: int, store: NgramStore | None) -> np.ndarray:
    """The row's own lookup, or the store's continuation where it follows a longer match of the
    row's last ids (on the trained Llama's held-out prompts, 2.83 tokens a call at 4 drafts with a
    store of 64 calibration continuations, against 1.66 from the row alone)."""
    own, n = lookup_match(context, tokens, ngram)
    if store is None or n >= ngram:
        return own
    stored, m = store.match(context, tokens)
    return stored if m > n else own
