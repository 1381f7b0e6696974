"""Lightweight blocks: shapes preserved, parameters and FLOPs reduced, compound scaling grows the family."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from accelkit.errors import ConfigError
from accelkit.measure import count_flops, count_parameters
from accelkit.techniques.lightweight import (
    CompoundScaling,
    DepthwiseConfig,
    DepthwiseSeparableConv2d,
    InvertedResidual,
    MobileDigitsNet,
    SqueezeExcitation,
    compare_architectures,
    efficient_family,
    to_depthwise_separable,
)
from accelkit.workloads.digits import DigitsCNN


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # tiny models gain nothing from a second thread, and on a shared CI box idle-spinning
    # OpenMP workers make them many times slower
    from accelkit.measure import thread_count

    with thread_count(1):
        yield


X = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(("stride", "padding"), [(1, 1), (2, 1), (1, 0)])
def test_depthwise_separable_conv_has_the_conv_output_shape(stride, padding):
    x = torch.randn(2, 16, 9, 9)
    conv = nn.Conv2d(16, 32, 3, stride, padding)
    dws = DepthwiseSeparableConv2d(16, 32, 3, stride, padding)
    assert dws(x).shape == conv(x).shape
    assert count_parameters(dws) < count_parameters(conv) / 3


def test_to_depthwise_separable_cuts_params_and_flops_and_keeps_output_shape():
    torch.manual_seed(0)
    model = DigitsCNN(width=32).eval()
    converted, replaced = to_depthwise_separable(copy.deepcopy(model))
    assert replaced == ["blocks.0.3", "blocks.1.0", "blocks.1.3", "blocks.2.0", "blocks.2.3"]
    assert isinstance(converted.blocks[1][0], DepthwiseSeparableConv2d)
    assert type(converted.blocks[0][0]) is nn.Conv2d  # 1 input channel: left alone (min_in_channels)
    converted.eval()
    assert converted(X).shape == model(X).shape == (3, 10)
    assert count_parameters(converted) < 0.25 * count_parameters(model)
    assert count_flops(lambda: converted(X)) < 0.25 * count_flops(lambda: model(X))


def test_to_depthwise_separable_without_candidates_is_a_config_error():
    with pytest.raises(ConfigError, match="no Conv2d"):
        to_depthwise_separable(nn.Sequential(nn.Linear(4, 4)))
    with pytest.raises(ConfigError, match="min_in_channels"):
        DepthwiseConfig(min_in_channels=0)


def test_inverted_residual_shapes_and_skip():
    x = torch.randn(2, 16, 8, 8)
    same = InvertedResidual(16, 16, stride=1, expand_ratio=4, se=True).eval()
    assert same.use_residual and same(x).shape == x.shape
    down = InvertedResidual(16, 24, stride=2).eval()
    assert not down.use_residual and down(x).shape == (2, 24, 4, 4)
    with pytest.raises(ConfigError, match="stride"):
        InvertedResidual(16, 16, stride=3)


def test_squeeze_excitation_gates_each_channel_between_zero_and_one():
    x = torch.rand(2, 16, 4, 4) + 0.1
    out = SqueezeExcitation(16)(x)
    assert out.shape == x.shape
    ratio = out / x  # one gate per (sample, channel), constant over pixels
    assert ((ratio > 0) & (ratio < 1)).all()
    assert torch.allclose(ratio, ratio[..., :1, :1].expand_as(ratio), atol=1e-6)


def test_mobilenet_digits_is_under_a_third_of_the_standard_cnn_flops():
    rows = compare_architectures({"cnn": DigitsCNN(64), "mobile": MobileDigitsNet()}, X)
    assert rows["cnn"]["flops_ratio"] == 1.0
    assert rows["mobile"]["flops_ratio"] < 1 / 3
    assert MobileDigitsNet().eval()(X).shape == (3, 10)


def test_compound_scaling_grows_depth_width_resolution_and_flops():
    assert CompoundScaling(phi=0).multipliers() == (1.0, 1.0, 1.0)
    d, w, r = CompoundScaling(phi=2).multipliers()
    assert d == pytest.approx(1.44) and w == pytest.approx(1.21) and r == pytest.approx(1.3225)
    family = efficient_family((0, 1, 2))
    assert list(family) == ["b0", "b1", "b2"]
    rows = compare_architectures(family, X)
    flops = [rows[n]["flops_per_item"] for n in family]
    assert flops[0] < flops[1] < flops[2]
    assert family["b2"].resolution == 11 and family["b2"](X).shape == (3, 10)
    with pytest.raises(ConfigError, match="alpha"):
        CompoundScaling(alpha=0.9)
    with pytest.raises(ConfigError, match="resolution"):
        MobileDigitsNet(resolution=2)
