import statistics

import pytest

from accelkit.measure import compare_interleaved, percentile


def test_interleaved_order_and_pair_ratios():
    calls = []
    fake_times = {"base": 4.0, "fast": 1.0, "slow": 8.0}
    fns = {name: (lambda n=name: calls.append(n)) for name in fake_times}

    import accelkit.measure.timing as timing

    real = timing._timed
    timing._timed = lambda fn: (fn(), fake_times[calls[-1]])[1]
    try:
        res = compare_interleaved(fns, baseline="base", repeats=4, warmup=0)
    finally:
        timing._timed = real
    # every round starts with the baseline, and each variant runs once per round
    assert calls[0::3] == ["base"] * 4
    assert sorted(calls) == sorted(["base", "fast", "slow"] * 4)
    # variant order rotates so no variant always follows the same neighbour
    assert calls[1] != calls[4]
    assert res["fast"].speedup == pytest.approx(4.0)
    assert res["slow"].speedup == pytest.approx(0.5)
    assert res["base"].speedup == pytest.approx(1.0)
    assert res["fast"].p50_ms == pytest.approx(1000.0)


def test_percentile_matches_statistics_median():
    vals = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0]
    assert percentile(vals, 50) == pytest.approx(statistics.median(vals))
    assert percentile(vals, 100) == 10.0
    assert percentile(vals, 0) == 1.0


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="baseline"):
        compare_interleaved({"a": lambda: None}, baseline="b")
    with pytest.raises(ValueError, match="repeats"):
        compare_interleaved({"a": lambda: None}, baseline="a", repeats=0)
