"""The inference variants are registered, gated by hardware, and compose with ``+``."""

from __future__ import annotations

import torch

from accelkit.variants import build_variant, list_variants
from accelkit.workloads.base import RunSettings
from accelkit.workloads.minilm import embedding_quality

NAMES = {"bf16-cast", "int8-dynamic", "int8-aware", "int8-aware-torch", "compile", "onnx", "onnx-int8-dynamic",
         "int8-weight-only", "int4-weight-only"}


def test_variants_are_registered_and_fp16_only_where_it_pays(digits_workload, minilm_workload):
    from accelkit.hardware import probe

    for wl in (digits_workload, minilm_workload):
        assert NAMES <= set(list_variants(wl))
    fp16_pays = torch.cuda.is_available() or probe()["recommend"]["fp16_on_cpu"]
    assert ("fp16" in list_variants(digits_workload)) == bool(fp16_pays)
    assert "int8-static" in list_variants(digits_workload)
    assert "int8-static" not in list_variants(minilm_workload)  # PT2E path is for tensor-input models
    # static min-max ranges are for convnets; on minilm they lost 0.65 cosine
    assert "onnx-int8-static" in list_variants(digits_workload)
    assert "onnx-int8-static" not in list_variants(minilm_workload)


def test_composition_with_padding_autocast_and_int8(minilm_workload, minilm_model):
    data = minilm_workload.eval_data(16)
    base = minilm_workload.default_settings(8)  # sentence-transformers' sorted dynamic padding
    built = build_variant("bf16+int8-dynamic", minilm_model, base, minilm_workload)
    model, settings, dtype = built.model, built.settings, built.compute_dtype
    assert settings.padding == "dynamic" and settings.autocast == "bf16" and dtype == "int8"
    assert built.details["converted_layers"] >= 36  # 6 layers x 6 Linears (+ pooler)
    ref = minilm_workload.predict(minilm_model, data, base)
    q = embedding_quality(minilm_workload.predict(model, data, settings), ref)
    assert q["cosine_mean"] > 0.9  # stock dynamic int8 is lossy on MiniLM (~0.97): the reason int8-aware exists


def test_weight_only_int8_keeps_digits_predictions(digits_workload, digits_model):
    data = digits_workload.eval_data(128)
    settings = RunSettings(batch_size=64)
    built = build_variant("int8-weight-only", digits_model, settings, digits_workload)
    model = built.model
    assert built.details["quantized_layers"] == 1
    ref = digits_workload.predict(digits_model, data, settings)
    out = digits_workload.predict(model, data, settings)
    assert digits_workload.quality(out, ref, data)["agreement"] >= 0.99
