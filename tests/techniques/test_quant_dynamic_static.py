"""int8 in PyTorch: dynamic (SQNR vs float, modules really converted) and PT2E static on digits."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from accelkit.errors import ConfigError
from accelkit.techniques.quantize import (
    DynamicInt8Config,
    StaticInt8Config,
    quantize_dynamic_int8,
    quantize_static_int8,
    sqnr_db,
)
from accelkit.workloads.base import RunSettings


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 32)).eval()


def test_dynamic_int8_converts_linears_and_stays_within_30_db():
    model = _mlp()
    x = torch.randn(16, 64, generator=torch.Generator().manual_seed(1))
    ref = model(x)
    qmodel, report = quantize_dynamic_int8(copy.deepcopy(model))
    assert report["converted"] == ["0", "2"]
    assert all("quantized" in type(qmodel[i]).__module__ for i in (0, 2))
    # PyTorch's own quantization tests gate on SQNR > 30 dB against the float model
    assert sqnr_db(ref, qmodel(x)) > 30


def test_dynamic_int8_lstm_and_exclusions_are_reported():
    torch.manual_seed(0)
    model = nn.ModuleDict({"rnn": nn.LSTM(8, 16, batch_first=True), "head": nn.Linear(16, 4), "conv": nn.Conv1d(8, 8, 3)})
    _, report = quantize_dynamic_int8(model, DynamicInt8Config(exclude=("head",)))
    assert report["converted"] == ["rnn"]
    assert report["kept_float_excluded"] == ["head"]
    assert report["kept_float_unsupported"] == ["conv"]


def test_dynamic_int8_on_a_conv_only_model_converts_nothing_and_says_so():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
    _, report = quantize_dynamic_int8(model)
    assert report["converted"] == [] and report["kept_float_unsupported"] == ["0"]


def test_int8_dynamic_variant_refuses_to_call_a_float_model_int8(digits_workload):
    from accelkit.variants import build_variant

    conv_only = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten())
    with pytest.raises(ConfigError, match="converted no layer"):
        build_variant("int8-dynamic", conv_only, RunSettings(), digits_workload)


@pytest.mark.parametrize("bad", [dict(module_types=("Conv2d",)), dict(module_types=())])
def test_dynamic_config_rejects_bad_values(bad):
    with pytest.raises(ConfigError, match="module_types"):
        DynamicInt8Config(**bad)


def test_static_config_rejects_bad_observer():
    with pytest.raises(ConfigError, match="observer"):
        StaticInt8Config(observer="entropy")


def _digits_batches(workload, n_batches=4, size=256):
    x = workload.calib_data(n_batches * size)["inputs"]
    return [(x[i : i + size],) for i in range(0, len(x), size)]


@pytest.mark.slow  # ~30 s on the shared 2-core box; the ONNX Runtime static path is checked by default
def test_static_int8_digits_accuracy_drop_at_most_half_a_point(digits_workload, digits_model):
    data = digits_workload.eval_data()
    settings = RunSettings(batch_size=256)
    ref = digits_workload.predict(digits_model, data, settings)
    qmodel, report = quantize_static_int8(
        copy.deepcopy(digits_model), (data["inputs"][:2],), _digits_batches(digits_workload),
        StaticInt8Config(observer="minmax", compile=False),
    )
    assert report["quantize_nodes"] >= 7  # 6 convs + the head, at least
    out = digits_workload.predict(qmodel, data, settings)
    drop = digits_workload.quality_drop(digits_workload.quality(out, ref, data), digits_workload.quality(ref, ref, data))
    assert drop <= 0.005
    assert sqnr_db(ref, out) > 20
    # dynamic batch: a batch size never seen in calibration runs
    assert qmodel(data["inputs"][:3]).shape == (3, 10)


def test_static_int8_rejects_empty_and_misshapen_calibration():
    from accelkit.workloads.digits import DigitsCNN

    digits_model = DigitsCNN(width=4).eval()
    example = (torch.rand(2, 1, 8, 8),)
    with pytest.raises(ConfigError, match="empty"):
        quantize_static_int8(copy.deepcopy(digits_model), example, [], StaticInt8Config(compile=False))
    with pytest.raises(ConfigError, match="does not fit"):
        quantize_static_int8(copy.deepcopy(digits_model), example, [(torch.rand(4, 3, 8, 8),)],
                             StaticInt8Config(compile=False))
