"""lookup_draft: the ids after the latest earlier match of the row's last n-gram, longest n first."""

from __future__ import annotations

import numpy as np

from accelkit.runtimes.prompt_lookup import lookup_draft


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
