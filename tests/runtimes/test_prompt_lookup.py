"""lookup_draft: the ids after the latest earlier match of the row's last n-gram, longest n first.
NgramStore: the most frequent continuation of each n-gram in its sequences, the longest stored
n-gram first; saved and loaded unchanged, a broken file the documented error. best_draft: the
store's guess only where it follows a longer match than the row's own."""

from __future__ import annotations

import numpy as np
import pytest

from accelkit.errors import ConfigError
from accelkit.runtimes.prompt_lookup import NgramStore, best_draft, lookup_draft


def _draft(ids, tokens=3, ngram=3):
    return lookup_draft(np.array(ids, dtype=np.int64), tokens, ngram).tolist()


def test_the_longest_match_wins_over_a_later_shorter_one():
    # the last 2 ids (2, 3) occur at 1; the last id alone occurs later, at 5, followed by 9
    assert _draft([1, 2, 3, 7, 8, 3, 9, 2, 3]) == [7, 8, 3]
    assert _draft([1, 2, 3, 7, 8, 3, 9, 2, 3], ngram=1) == [9, 2, 3]


def test_the_latest_match_is_copied_and_a_match_near_the_end_gives_fewer_ids():
    assert _draft([5, 1, 6, 5, 1, 7, 5, 1], tokens=2, ngram=2) == [7, 5]
    assert _draft([4, 4], tokens=5) == [4]  # overlapping with the tail: what follows is the tail itself


def test_no_match_or_no_room_gives_nothing():
    assert _draft([1, 2, 3]) == []
    assert _draft([7]) == []
    assert _draft([1, 2, 1], tokens=0) == []


def _by_windows(ids, tokens, ngram):
    """The definition, spelled out: the latest earlier window equal to the last n ids, n from ngram down."""
    for n in range(min(ngram, len(ids) - 1), 0, -1):
        starts = [s for s in range(len(ids) - n) if ids[s:s + n] == ids[-n:]]
        if starts:
            return ids[starts[-1] + n:starts[-1] + n + tokens]
    return []


def test_random_contexts_match_the_definition():
    rng = np.random.default_rng(0)
    for _ in range(500):
        ids = rng.integers(0, int(rng.integers(2, 6)), int(rng.integers(1, 30))).tolist()
        tokens, ngram = int(rng.integers(1, 6)), int(rng.integers(1, 5))
        assert _draft(ids, tokens, ngram) == _by_windows(ids, tokens, ngram), (ids, tokens, ngram)


def _ids(*values):
    return np.array(values, dtype=np.int64)


def test_the_store_keeps_each_ngrams_most_frequent_continuation():
    store = NgramStore.from_sequences([[1, 2, 3, 4], [9, 2, 3, 5], [8, 2, 3, 5, 6]], ngram=2, tokens=2)
    assert store.match(_ids(7, 2, 3), 2)[0].tolist() == [5, 6]  # (2, 3) went on to 5 twice, to 4 once
    assert store.match(_ids(7, 2, 3), 2)[1] == 2
    # the longest stored n-gram first: (1, 2) went on to 3, 4, where (2,) alone mostly went to 3, 5
    found, n = store.match(_ids(1, 2), 3)
    assert (found.tolist(), n) == ([3, 4], 2)
    assert store.match(_ids(7, 2), 3)[0].tolist() == [3, 5]
    tied = NgramStore.from_sequences([[1, 4], [1, 3]], ngram=1, tokens=1)
    assert tied.match(_ids(1), 1)[0].tolist() == [4]  # a tie: the continuation seen first
    assert store.match(_ids(42), 2)[1] == 0 and store.match(_ids(1, 2), 0)[1] == 0


def test_the_store_saves_and_loads_the_same_table(tmp_path):
    rng = np.random.default_rng(1)
    store = NgramStore.from_sequences(rng.integers(0, 5, (6, 20)).tolist(), ngram=3, tokens=4)
    store.save(tmp_path / "s.json")
    back = NgramStore.load(tmp_path / "s.json")
    assert (back.ngram, back.tokens, set(back.table)) == (3, 4, set(store.table))
    assert all(np.array_equal(back.table[k], v) for k, v in store.table.items())
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a readable n-gram store"):
        NgramStore.load(tmp_path / "bad.json")


def test_the_store_is_read_only_where_it_matches_more_than_the_row():
    store = NgramStore.from_sequences([[5, 6, 7, 8, 9]], ngram=3, tokens=4)
    # the row has (6, 7) once before only as a 1-id match of 7: the store's 3-id match wins
    assert best_draft(_ids(7, 1, 5, 6, 7), 2, 3, store).tolist() == [8, 9]
    # the row's own 3-id match is as long as any: its own text is copied
    assert best_draft(_ids(5, 6, 7, 3, 5, 6, 7), 2, 3, store).tolist() == [3, 5]
    assert best_draft(_ids(5, 6, 7, 3, 5, 6, 7), 2, 3, None).tolist() == [3, 5]
    assert best_draft(_ids(1, 2), 2, 3, store).tolist() == []  # nothing anywhere
