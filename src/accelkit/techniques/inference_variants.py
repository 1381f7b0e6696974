"""Registers the inference variants of issue 3: precision, int8 (dynamic, static, accuracy-aware,
weight-only), torch.compile and ONNX Runtime (fp32, dynamic int8, static int8).

Each variant is a thin call into its technique module; what a technique decided (layers
converted or kept in float, compile time) goes to ``model.accelkit_details`` for the report.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from accelkit._lazy import is_available
from accelkit.errors import ConfigError
from accelkit.techniques.precision import PrecisionConfig, apply_precision
from accelkit.variants import register_variant
from accelkit.workloads.base import RunSettings, Workload

__all__: list[str] = []


def _is_text(workload: Workload) -> bool:
    return hasattr(workload, "tokenizer")


def _has_ort(workload: Workload) -> bool:
    return is_available("onnxruntime")


def _fp16_fast_here(workload: Workload) -> bool:
    # fp16 on CPU is emulated (slower than fp32) without AVX512_FP16/AMX-FP16: list it only where it pays.
    if torch.cuda.is_available():
        return True
    from accelkit.hardware import probe

    return bool(probe()["recommend"].get("fp16_on_cpu"))


def _attach(model: Any, details: dict) -> Any:
    try:
        existing = dict(getattr(model, "accelkit_details", None) or {})
        model.accelkit_details = {**existing, **details}
    except AttributeError:  # pragma: no cover - objects without a __dict__
        pass
    return model


def _calib_batches(workload: Workload, settings: RunSettings, limit: int) -> list[Any]:
    data = workload.calib_data(limit)
    return [inputs for inputs, _ in workload.batches(data, settings.with_(autocast=None))]


@register_variant("bf16-cast", description="weights and activations cast to bf16 (half the weight memory)",
                  compute_dtype="bf16")
def _bf16_cast(model, settings, workload):
    return apply_precision(model, settings, PrecisionConfig("bf16", "cast"))


@register_variant("fp16", description="fp16 autocast (CUDA, or CPUs with AVX512_FP16)", applies_to=_fp16_fast_here,
                  compute_dtype="bf16")
def _fp16(model, settings, workload):
    return apply_precision(model, settings, PrecisionConfig("fp16", "autocast"))


@register_variant("fp16-cast", description="weights cast to fp16 (CUDA, or CPUs with AVX512_FP16)",
                  applies_to=_fp16_fast_here, compute_dtype="bf16")
def _fp16_cast(model, settings, workload):
    return apply_precision(model, settings, PrecisionConfig("fp16", "cast"))


@register_variant("int8-dynamic", description="dynamic int8 Linear/LSTM/GRU, per-channel weights (PyTorch)",
                  compute_dtype="int8")
def _int8_dynamic(model, settings, workload):
    from accelkit.techniques.quantize import quantize_dynamic_int8

    model, report = quantize_dynamic_int8(model)
    if not report["converted"]:
        raise ConfigError(
            "int8-dynamic converted no layer (the model has no Linear/LSTM/GRU); it would be a float model "
            "called int8 — use int8-static for conv models"
        )
    return _attach(model, {"converted_layers": len(report["converted"]),
                           "kept_float_unsupported": report["kept_float_unsupported"]}), settings


@register_variant("int8-static", description="static int8 (PT2E, x86 Inductor quantizer, BN folded, compiled)",
                  applies_to=lambda w: not _is_text(w), compute_dtype="int8")
def _int8_static(model, settings, workload):
    from accelkit.techniques.quantize import StaticInt8Config, quantize_static_int8

    # calibrate in batches of >= 64 whatever the run's batch size: 8 batches of 1 image would
    # see too little data, and a size-1 example would make export specialize the batch axis to 1
    calib_settings = settings.with_(batch_size=max(settings.batch_size, 64))
    batches = [b if isinstance(b, tuple) else (b,) for b in _calib_batches(workload, calib_settings, 2048)]
    if not batches:
        raise ConfigError(f"workload {workload.name!r} has no calibration data for int8-static")
    example = tuple(t[:2] for t in batches[0])
    start = time.perf_counter()
    qmodel, report = quantize_static_int8(model, example, batches, StaticInt8Config(observer="minmax"))
    report["quantize_s"] = round(time.perf_counter() - start, 2)
    runner = _Warmed(qmodel, report)
    runner.warm_up(workload, settings)
    return runner, settings


class _Warmed(nn.Module):
    """Holds a compiled callable; ``warm_up`` compiles it at build time so compile time is not timed."""

    def __init__(self, fn: Any, details: dict) -> None:
        super().__init__()
        self.fn = fn
        self.accelkit_details = dict(details)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def warm_up(self, workload: Workload, settings: RunSettings) -> None:
        start = time.perf_counter()
        data = workload.calib_data(2 * settings.batch_size)
        for size in (settings.batch_size, 1):
            workload.predict(self, data, settings.with_(batch_size=size))
        self.accelkit_details["compile_s"] = round(time.perf_counter() - start, 2)


@register_variant("compile", description="torch.compile (inductor); compile time in details.compile_s")
def _compile(model, settings, workload):
    from accelkit.techniques.compile import CompileConfig, compile_model

    runner = _Warmed(compile_model(model, CompileConfig()), {"compiler": "inductor"})
    runner.warm_up(workload, settings)
    return runner, settings


@register_variant("int8-aware", description="accuracy-aware int8 in ONNX Runtime: SmoothQuant, sensitivity, "
                  "fp32 fallback until the budget is met", applies_to=_has_ort, compute_dtype="int8")
def _int8_aware(model, settings, workload):
    from accelkit.techniques.aware_int8 import AwareInt8Config, quantize_accuracy_aware

    result, _ = quantize_accuracy_aware(model, workload, settings, AwareInt8Config())
    return result, settings


@register_variant("int8-aware-torch", description="accuracy-aware dynamic int8 in PyTorch; fallback layers follow "
                  "the autocast (compose with bf16)", compute_dtype="int8")
def _int8_aware_torch(model, settings, workload):
    from accelkit.techniques.aware_int8 import AwareInt8Config, quantize_accuracy_aware

    result, _ = quantize_accuracy_aware(model, workload, settings, AwareInt8Config(backend="torch"))
    return result, settings


def _example(workload: Workload, settings: RunSettings) -> Any:
    return workload.example_inputs(workload.calib_data(settings.batch_size), settings.with_(autocast=None))


@register_variant("onnx", description="ONNX export, ONNX Runtime fp32 (all graph optimizations)", applies_to=_has_ort)
def _onnx(model, settings, workload):
    from accelkit.export.onnx import ort_session_module

    return ort_session_module(model, _example(workload, settings)), settings


@register_variant("onnx-int8-dynamic", description="ONNX Runtime quantize_dynamic with its defaults "
                  "(per-tensor weights): what Optimum users get", applies_to=_has_ort, compute_dtype="int8")
def _onnx_int8_dynamic(model, settings, workload):
    from accelkit.export.onnx import OrtModule, export_onnx, quantize_onnx_dynamic

    q = quantize_onnx_dynamic(export_onnx(model, _example(workload, settings)))
    return OrtModule(q, details={"quantization": "onnxruntime dynamic, per-tensor weights"},
                     flop_reference=model), settings


@register_variant("onnx-int8-static", description="ONNX Runtime static int8 (QDQ, per-channel, min-max calibrated "
                  "on calibration data)",
                  # min-max static ranges collapse on transformer activations with outliers (cosine
                  # drop 0.65 on minilm in optimize screening); text models use int8-aware instead
                  applies_to=lambda w: _has_ort(w) and not _is_text(w), compute_dtype="int8")
def _onnx_int8_static(model, settings, workload):
    from accelkit.export.onnx import OrtModule, export_onnx, quantize_onnx_static

    batches = _calib_batches(workload, settings.with_(batch_size=max(settings.batch_size, 64)), 512)[:16]
    q = quantize_onnx_static(export_onnx(model, _example(workload, settings)), batches, method="minmax")
    details = {"quantization": "onnxruntime static QDQ, min-max", "calib_batches": len(batches)}
    return OrtModule(q, details=details, flop_reference=model), settings


def _weight_only(model, settings, workload, bits: int):
    from accelkit.techniques.weight_only import WeightOnlyConfig, quantize_weight_only_

    report = quantize_weight_only_(model, WeightOnlyConfig(bits=bits))
    return _attach(model, report), settings


@register_variant("int8-weight-only", description="torchao int8 weight-only Linear (memory-bound decoding)",
                  compute_dtype="fp32")
def _int8_weight_only(model, settings, workload):
    return _weight_only(model, settings, workload, 8)


@register_variant("int4-weight-only", description="torchao int4 weight-only Linear, group size 32",
                  compute_dtype="fp32")
def _int4_weight_only(model, settings, workload):
    return _weight_only(model, settings, workload, 4)
