import torch
from torch import nn

from accelkit.measure import (
    count_flops,
    count_parameters,
    measure_roofline,
    serialized_size_mb,
    thread_count,
)


def test_flops_of_a_linear_layer_are_2mnk():
    lin = nn.Linear(64, 32, bias=False)
    x = torch.randn(8, 64)
    assert count_flops(lambda: lin(x)) == 2 * 8 * 64 * 32


def test_parameters_and_size_scale_with_the_model():
    small, big = nn.Linear(10, 10), nn.Linear(100, 100)
    assert count_parameters(small) == 110
    assert count_parameters(big) == 10100
    # fp32: 4 bytes a parameter plus a little pickle framing
    assert 0.0404 <= serialized_size_mb(big) < 0.05
    assert serialized_size_mb(small) < serialized_size_mb(big)


def test_thread_count_restores_previous_value():
    before = torch.get_num_threads()
    with thread_count(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_roofline_reports_positive_peaks_and_fractions():
    roof = measure_roofline(size=128, repeats=2)
    assert roof.fp32_gflops > 0
    # a job that ran at exactly the peak rate reaches fraction 1
    assert roof.fraction(roof.fp32_gflops * 1e9, 1.0, "fp32") == 1.0


def test_roofline_best_keeps_the_higher_peak_per_dtype():
    from accelkit.measure.roofline import Roofline

    a = Roofline(100.0, None, 300.0, 512, 2)
    b = Roofline(120.0, 200.0, 250.0, 512, 2)
    best = a.best(b)
    assert (best.fp32_gflops, best.bf16_gflops, best.int8_gops) == (120.0, 200.0, 300.0)

