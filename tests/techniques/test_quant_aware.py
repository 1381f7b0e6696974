"""Accuracy-aware int8: SmoothQuant keeps float outputs, sensitivity finds the outlier layer,
the fallback keeps the fewest layers that meet the budget and says which and why."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from accelkit.errors import ConfigError
from accelkit.runtimes.torch_eager import SmoothedLinear
from accelkit.techniques.aware_int8 import AwareInt8Config, quantize_accuracy_aware
from accelkit.techniques.sensitivity import fallback_search, local_sqnr_db
from accelkit.techniques.smoothquant import (
    SmoothQuantConfig,
    apply_smoothquant_,
    collect_input_absmax,
)
from accelkit.workloads.base import RunSettings, TensorWorkload


class _OutlierNet(nn.Module):
    """Three Linears; the middle one sees two input channels ~200x larger than the rest."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(32, 64)
        self.b = nn.Linear(64, 64)
        self.c = nn.Linear(64, 16)
        gain = torch.ones(64)
        gain[[3, 40]] = 200.0
        self.register_buffer("gain", gain)
        with torch.no_grad():  # as in LLMs: huge channels, small weights on them, so the rest still matters
            self.b.weight[:, [3, 40]] /= 200.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x)) * self.gain  # (..., 64) with outlier channels
        return self.c(torch.relu(self.b(h)))


def test_smoothquant_leaves_float_outputs_unchanged_and_tames_outliers():
    model = _OutlierNet().eval()
    x = torch.randn(64, 32)
    ref = model(x)
    absmax = collect_input_absmax(model, lambda m: m(x))
    assert set(absmax) == {"a", "b", "c"}
    facts = apply_smoothquant_(model, absmax, SmoothQuantConfig(alpha=0.8))
    assert isinstance(model.b, SmoothedLinear)
    assert facts["b"]["outlier_ratio"] > 50
    torch.testing.assert_close(model(x), ref, rtol=1e-4, atol=1e-4)


def test_local_sensitivity_ranks_the_outlier_layer_lowest_and_smoothing_raises_it():
    model = _OutlierNet().eval()
    x = torch.randn(64, 32)
    before = local_sqnr_db(model, ["a", "b", "c"], lambda m: m(x))
    assert min(before, key=before.get) == "b"
    apply_smoothquant_(model, collect_input_absmax(model, lambda m: m(x)), SmoothQuantConfig(alpha=0.8))
    after = local_sqnr_db(model, ["a", "b", "c"], lambda m: m(x))
    assert after["b"] > before["b"] + 6  # at least 6 dB (4x less noise power)


@pytest.mark.parametrize("answer", [0, 1, 3, 5, 7])
def test_fallback_search_finds_the_fewest_kept_layers(answer):
    ranked = [f"l{i}" for i in range(7)]
    kept, drop, trace = fallback_search(ranked, lambda k: 0.0 if len(k) >= answer else 1.0, budget=0.5)
    assert len(kept) == answer and kept == ranked[:answer] and drop == 0.0
    assert len(trace) <= 7


def test_fallback_search_returns_everything_when_the_budget_cannot_be_met():
    kept, drop, _ = fallback_search(["a", "b"], lambda k: 1.0, budget=0.1)
    assert kept == ["a", "b"] and drop == 1.0


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_aware_int8_keeps_sensitive_layers_until_budget_and_reports_why(backend):
    # (B, 4, 32) inputs: Linears on 3-D inputs export as MatMul, which ONNX Runtime quantizes
    g = torch.Generator().manual_seed(2)
    wl = TensorWorkload("outlier", _OutlierNet, torch.randn(128, 4, 32, generator=g),
                        calib_inputs=torch.randn(128, 4, 32, generator=g), default_batch_size=64)
    model = wl.build_model()
    settings = RunSettings(batch_size=64)
    data = wl.eval_data()
    ref = wl.predict(model, data, settings)
    config = AwareInt8Config(max_quality_drop=1e-3, smoothquant_alpha=None, backend=backend, calib_limit=64)
    result, details = quantize_accuracy_aware(copy.deepcopy(model), wl, settings, config)
    assert details["meets_calib_budget"]
    kept = [k["layer"] for k in details["kept_layers"]]
    assert kept and kept[0] == "b"  # the outlier layer goes first
    assert all("SQNR" in k["why"] for k in details["kept_layers"])
    assert details["quantized_layers"] == 3 - len(kept) >= 1
    # a runtime describes itself; a torch model carries its details
    facts = result.describe().to_dict() if backend == "onnxruntime" else result.accelkit_details
    assert facts["kept_layers"] == details["kept_layers"]
    q = wl.quality(wl.predict(result, data, settings), ref, data)
    assert q["cosine_mean"] >= 0.995
    if backend == "onnxruntime":
        assert facts["quantized_ops"] >= 1  # int8 ops really in the graph


def test_aware_int8_config_validation():
    with pytest.raises(ConfigError, match="backend"):
        AwareInt8Config(backend="tensorrt")
    with pytest.raises(ConfigError, match="smoothquant_alpha"):
        AwareInt8Config(smoothquant_alpha=1.5)
    with pytest.raises(ConfigError, match="alpha"):
        SmoothQuantConfig(alpha=-0.1)


def test_aware_int8_on_2d_linears_falls_back_to_torch_and_says_so():
    g = torch.Generator().manual_seed(3)
    wl = TensorWorkload("outlier2d", _OutlierNet, torch.randn(64, 32, generator=g),
                        calib_inputs=torch.randn(64, 32, generator=g), default_batch_size=64)
    result, details = quantize_accuracy_aware(wl.build_model(), wl, RunSettings(batch_size=64),
                                              AwareInt8Config(max_quality_drop=1e-3, calib_limit=64))
    assert details["backend"] == "torch" and "Gemm" in details["fallback"]
    assert details["quantized_layers"] >= 1


@pytest.mark.slow  # ~1-2 min: SmoothQuant + sensitivity + ONNX export of the real MiniLM
def test_int8_aware_on_minilm_is_faithful(minilm_workload, minilm_model):
    from accelkit.variants import build_variant

    data = minilm_workload.eval_data(64)
    base = minilm_workload.default_settings(32)
    built = build_variant("int8-aware", minilm_model, base, minilm_workload)
    model, settings = built.model, built.settings
    assert built.details["quantized_layers"] > 0
    assert model.describe().to_dict()["quantized_ops"] > 0  # int8 ops really in the graph
    ref = minilm_workload.predict(minilm_model, data, base)
    q = minilm_workload.quality(minilm_workload.predict(model, data, settings), ref, data)
    assert q["cosine_mean"] >= 0.99 and q["cosine_min"] >= 0.97


@pytest.mark.slow  # compiles with inductor: tens of seconds
def test_compile_variant_matches_eager_on_digits(digits_workload, digits_model):
    from accelkit.variants import build_variant

    data = digits_workload.eval_data(64)
    settings = RunSettings(batch_size=32)
    built = build_variant("compile", digits_model, settings, digits_workload)
    model = built.model
    assert built.details["compile_s"] > 0
    ref = digits_workload.predict(digits_model, data, settings)
    torch.testing.assert_close(digits_workload.predict(model, data, settings), ref, rtol=1e-4, atol=1e-4)
