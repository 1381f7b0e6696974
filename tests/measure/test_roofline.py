"""measure_roofline: growth over GEMM sizes, best of kernels, old results, missing backends."""

from __future__ import annotations

import json
import sys

import pytest

from accelkit.measure import roofline as R
from accelkit.measure.roofline import Roofline, grow_rate, measure_kernels, roofline_from_kernels


class FakeClock:
    """A clock that advances only when a fake kernel says it spent time."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def fake_rate(rates: dict[int, float], clock: FakeClock | None = None, cost: float = 0.0):
    calls: list[int] = []

    def rate(n: int) -> float | None:
        calls.append(n)
        if clock is not None:
            clock.t += cost * (n / 256) ** 3
        return rates.get(n)

    return rate, calls


def test_growth_stops_after_two_sizes_that_do_not_beat_the_best_by_five_percent():
    rate, calls = fake_rate({256: 100.0, 512: 200.0, 1024: 204.0, 2048: 206.0, 3072: 900.0, 4096: 900.0})
    best, size, curve = grow_rate(rate, [256, 512, 1024, 2048, 3072, 4096], max_seconds=1e9)
    assert calls == [256, 512, 1024, 2048]  # 1024 and 2048 each < 5% above 200: stop before 3072
    assert (best, size) == (206.0, 2048)  # the best rate seen is kept, with the size that gave it
    assert curve == [[256, 100.0], [512, 200.0], [1024, 204.0], [2048, 206.0]]


def test_growth_goes_on_while_the_rate_keeps_rising_and_a_gain_resets_patience():
    rates = {256: 100.0, 512: 101.0, 1024: 150.0, 2048: 151.0, 3072: 200.0, 4096: 199.0}
    rate, calls = fake_rate(rates)
    best, size, _ = grow_rate(rate, list(rates), max_seconds=1e9)
    assert calls == list(rates)
    assert (best, size) == (200.0, 3072)


def test_growth_stops_before_a_size_predicted_to_overrun_the_time_budget():
    clock = FakeClock()
    rate, calls = fake_rate({256: 1.0, 512: 2.0, 1024: 4.0, 2048: 8.0}, clock, cost=0.01)
    # 256 costs 0.01, 512 0.08, 1024 would be predicted 0.64 more: over a 0.5 s budget
    best, size, _ = grow_rate(rate, [256, 512, 1024, 2048], max_seconds=0.5, clock=clock)
    assert calls == [256, 512]
    assert (best, size) == (2.0, 512)


def test_a_failing_size_ends_growth_and_a_failing_first_size_means_no_kernel():
    def oom_at_2048(n: int) -> float:
        if n >= 2048:
            raise RuntimeError("out of memory")
        return float(n)

    assert grow_rate(oom_at_2048, [256, 512, 1024, 2048, 3072], max_seconds=1e9)[:2] == (1024.0, 1024)
    assert grow_rate(lambda n: None, [256, 512], max_seconds=1e9) is None
    assert measure_kernels({"torch-int8": oom_at_2048, "ort-int8": lambda n: None}, [2048], 1.0) == {}


def test_fixed_size_without_growth():
    assert R._sizes(512, False, lambda n: True) == [512]
    assert R._sizes(512, True, lambda n: True) == [512, 1024, 2048, 3072, 4096]
    assert R._sizes(300, True, lambda n: n <= 2048) == [300, 512, 1024, 2048]


def test_each_dtype_ceiling_is_the_best_of_its_kernels_and_fraction_uses_it():
    kernels = measure_kernels({
        "torch-fp32": fake_rate({256: 100.0, 512: 150.0})[0],
        "ort-fp32": fake_rate({256: 180.0})[0],
        "torch-bf16": fake_rate({256: 300.0, 512: 400.0})[0],
        "torch-int8": fake_rate({256: 500.0})[0],
        "ort-int8": fake_rate({256: 600.0, 512: 800.0})[0],
    }, [256, 512], max_seconds=1e9)
    roof = roofline_from_kernels(kernels, 256, 2)
    assert (roof.fp32_gflops, roof.bf16_gflops, roof.int8_gops) == (180.0, 400.0, 800.0)
    assert roof.sizes == {"fp32": 256, "bf16": 512, "int8": 512}
    assert roof.kernels["torch-fp32"] == {"gflops": 150.0, "size": 512, "curve": [[256, 100.0], [512, 150.0]]}
    assert roof.fraction(90e9, 1.0, "fp32") == 0.5
    assert roof.fraction(400e9, 2.0, "int8") == 0.25
    assert json.loads(json.dumps(roof.to_dict())) == roof.to_dict()
    assert Roofline(**roof.to_dict()) == roof


def test_a_dtype_no_kernel_multiplies_is_none():
    roof = roofline_from_kernels({"torch-fp32": {"gflops": 10.0, "size": 256, "curve": [[256, 10.0]]}}, 256, 1)
    assert (roof.bf16_gflops, roof.int8_gops) == (None, None)
    assert roof.fraction(1e9, 1.0, "int8") is None
    assert roof.sizes == {"fp32": 256}


def test_results_written_before_kernels_and_sizes_still_load():
    old = {"fp32_gflops": 150.0, "bf16_gflops": 300.0, "int8_gops": None, "size": 512, "threads": 2}
    roof = Roofline(**old)
    assert roof.kernels == {} and roof.sizes == {}
    assert roof.fraction(75e9, 1.0) == 0.5
    assert Roofline.from_dict({**old, "some_later_field": 1}) == roof
    assert Roofline(50.0, 210.0, None, 1024, 1).to_dict()["kernels"] == {}  # positional construction unchanged


def test_best_keeps_the_higher_of_each_dtype_kernel_and_size():
    a = Roofline(100.0, None, 300.0, 512, 2,
                 kernels={"torch-fp32": {"gflops": 100.0, "size": 1024}, "ort-int8": {"gflops": 300.0, "size": 512}},
                 sizes={"fp32": 1024, "int8": 512})
    b = Roofline(120.0, 200.0, 250.0, 512, 2,
                 kernels={"torch-fp32": {"gflops": 120.0, "size": 2048}, "ort-int8": {"gflops": 250.0, "size": 1024},
                          "torch-bf16": {"gflops": 200.0, "size": 2048}},
                 sizes={"fp32": 2048, "bf16": 2048, "int8": 1024})
    for best in (a.best(b), b.best(a)):
        assert (best.fp32_gflops, best.bf16_gflops, best.int8_gops) == (120.0, 200.0, 300.0)
        assert best.kernels == {"torch-fp32": {"gflops": 120.0, "size": 2048}, "ort-int8": {"gflops": 300.0, "size": 512},
                                "torch-bf16": {"gflops": 200.0, "size": 2048}}
        assert best.sizes == {"fp32": 2048, "bf16": 2048, "int8": 512}
    old = Roofline(90.0, None, None, 512, 2)  # an old measurement without kernels merges too
    assert old.best(a).kernels == a.kernels and old.best(a).fp32_gflops == 100.0


def test_a_missing_backend_is_absent_from_kernels_not_an_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert R._openvino_kernels(1) == {}
    assert R._ort_kernels(1) == {}
    roof = R.measure_roofline(size=32, repeats=1, grow=False)
    assert set(roof.kernels) == {"torch-fp32", "torch-bf16", "torch-int8"}
    assert roof.fp32_gflops > 0 and roof.sizes["fp32"] == 32
    assert all(k["size"] == 32 for k in roof.kernels.values())


def test_measured_kernels_are_named_by_backend_and_dtype():
    pytest.importorskip("onnxruntime")
    roof = R.measure_roofline(size=32, repeats=1, grow=False)
    assert {"torch-fp32", "ort-fp32", "ort-int8"} <= set(roof.kernels)
    assert roof.int8_gops == max(v["gflops"] for k, v in roof.kernels.items() if k.endswith("-int8"))
