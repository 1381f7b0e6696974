"""Accuracy-aware int8: SmoothQuant, per-layer sensitivity, and float fallback to a quality budget.

Buys int8 speed (ONNX Runtime's VNNI kernels, or PyTorch dynamic int8) while holding the
quality drop on calibration data under ``max_quality_drop``; costs a calibration pass per
Linear at build time, and the layers kept in float give back part of the speed-up.
The returned model carries ``accelkit_details`` naming every kept layer and why.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from accelkit.config import Config
from accelkit.errors import ConfigError
from accelkit.runtimes.onnxruntime import OrtModule
from accelkit.techniques.onnx_runtime import ORT_AVAILABLE
from accelkit.techniques.quantize import DynamicInt8Config, quantize_dynamic_int8
from accelkit.techniques.registry import CALIB_BUDGET_SHARE, BuildContext, Built, register_technique
from accelkit.techniques.sensitivity import fallback_search, layer_sensitivity, local_sqnr_db
from accelkit.techniques.smoothquant import (
    SmoothQuantConfig,
    apply_smoothquant_,
    collect_input_absmax,
)
from accelkit.workloads.base import RunSettings, Workload

__all__ = ["AwareInt8Config", "quantize_accuracy_aware", "onnx_nodes_by_layer"]

_BACKENDS = ("onnxruntime", "torch")


@dataclass
class AwareInt8Config(Config):
    """``max_quality_drop``: allowed drop of the workload's primary metric on calibration data.

    ``smoothquant_alpha``: None turns smoothing off. ``backend``: "onnxruntime" (fast int8
    kernels, float fallback layers run in fp32) or "torch" (dynamic int8 modules; fallback
    layers follow the run's autocast, e.g. bf16).
    """

    max_quality_drop: float = 0.004
    # 0.8, not the paper's 0.5: measured on minilm, 0.5 needed 3 Linears in fp32, 0.8 none
    smoothquant_alpha: float | None = 0.8
    backend: str = "onnxruntime"
    calib_limit: int = 64
    per_channel: bool = True
    sensitivity: str = "local"  # "local": each layer's int8 output SQNR, one pass; "end-to-end": one pass per layer
    version: int = 1

    def __post_init__(self) -> None:
        if self.max_quality_drop < 0:
            raise ConfigError(f"max_quality_drop={self.max_quality_drop}: expected >= 0")
        if self.smoothquant_alpha is not None and not 0 <= self.smoothquant_alpha <= 1:
            raise ConfigError(f"smoothquant_alpha={self.smoothquant_alpha}: expected None or a value in [0, 1]")
        if self.backend not in _BACKENDS:
            raise ConfigError(f"backend={self.backend!r}: expected one of {_BACKENDS}")
        if self.sensitivity not in ("local", "end-to-end"):
            raise ConfigError(f"sensitivity={self.sensitivity!r}: expected 'local' or 'end-to-end'")
        if self.calib_limit < 1:
            raise ConfigError(f"calib_limit={self.calib_limit}: expected >= 1")


def onnx_nodes_by_layer(onnx_bytes: bytes, layers: list[str]) -> dict[str, list[str]]:
    """MatMul node names of the exported graph that belong to each torch Linear name.

    The TorchScript exporter names nodes by module scope, e.g. ``/model/encoder/layer.0/attention/self/query/linear/MatMul``.
    """
    import onnx

    graph = onnx.load_from_string(onnx_bytes).graph
    nodes = [n.name for n in graph.node if n.op_type == "MatMul"]
    found: dict[str, list[str]] = {}
    for layer in layers:
        # numeric children of a ModuleList keep their dot: encoder.layer.0 → encoder/layer.0
        parts = layer.split(".")
        scope = parts[0]
        for p in parts[1:]:
            scope += ("." if p.isdigit() else "/") + p
        found[layer] = [n for n in nodes if f"/{scope}/" in n]
    return found


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _linear_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n]


def quantize_accuracy_aware(
    model: nn.Module,
    workload: Workload,
    settings: RunSettings,
    config: AwareInt8Config | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[Any, dict]:
    """Smooth, rank layers by int8 sensitivity, and keep the fewest in float that meet the budget.

    Returns (model or ONNX Runtime module, details). Quality is measured on the workload's
    calibration data (never its evaluation data) against the fp32 model's outputs.
    """
    config = config or AwareInt8Config()
    say = progress or (lambda msg: None)
    calib = workload.calib_data(config.calib_limit)
    if workload.n_items(calib) == 0:
        raise ConfigError("calibration set is empty: the workload's calib_data() returned no items")
    fp32_settings = settings.with_(autocast=None)
    model.eval()
    reference = workload.predict(model, calib, fp32_settings)
    ref_quality = workload.quality(reference, reference, calib)

    def drop_of(m: Any, s: RunSettings = fp32_settings) -> float:
        out = workload.predict(m, calib, s)
        return workload.quality_drop(workload.quality(out, reference, calib), ref_quality)

    layers = _linear_names(model)
    if not layers:
        raise ConfigError("model has no nn.Linear layer: accuracy-aware int8 has nothing to quantize")
    details: dict[str, Any] = {"technique": "int8-aware", "backend": config.backend,
                               "budget": config.max_quality_drop, "metric": workload.primary_metric,
                               "calib_items": workload.n_items(calib)}
    if config.smoothquant_alpha is not None:
        say("smoothquant: calibrating activation ranges")
        absmax = collect_input_absmax(model, lambda m: workload.predict(m, calib, fp32_settings))
        facts = apply_smoothquant_(model, absmax, SmoothQuantConfig(alpha=config.smoothquant_alpha))
        worst = sorted(facts.items(), key=lambda kv: -kv[1]["outlier_ratio"])[:3]
        details["smoothquant"] = {"alpha": config.smoothquant_alpha, "layers": len(facts),
                                  "largest_outlier_ratio": {k: v["outlier_ratio"] for k, v in worst}}
        layers = list(absmax)
    say(f"{config.sensitivity} sensitivity of {len(layers)} layers")
    if config.sensitivity == "local":
        sqnr = local_sqnr_db(model, layers, lambda m: workload.predict(m, calib, fp32_settings))
        ranked = sorted(layers, key=lambda n: sqnr[n])

        def why(n: str, i: int) -> str:
            return f"int8 output SQNR {sqnr[n]:.1f} dB, the {_ordinal(i + 1)} lowest of {len(layers)}"

        sens_report = {n: round(sqnr[n], 2) for n in ranked[:5]}
    else:
        sens = layer_sensitivity(model, layers, drop_of, progress=say)
        ranked = sorted(layers, key=lambda n: -sens[n])

        def why(n: str, i: int) -> str:
            return f"int8 alone costs {sens[n]:.5f} {workload.primary_metric}, the {_ordinal(i + 1)} largest of {len(layers)}"

        sens_report = {n: round(sens[n], 6) for n in ranked[:5]}

    backend = config.backend
    if backend == "onnxruntime":
        from accelkit.export.onnx import export_onnx, quantize_onnx_dynamic

        float_bytes = export_onnx(model, workload.example_inputs(calib, fp32_settings))
        node_map = onnx_nodes_by_layer(float_bytes, layers)
        # ONNX Runtime's dynamic int8 covers MatMul only: a Linear on 2-D input exports as Gemm
        unmapped = [n for n, nodes in node_map.items() if not nodes]
        if len(unmapped) == len(layers):
            backend = "torch"
            details["backend"] = "torch"
            details["fallback"] = ("onnxruntime dynamic int8 covers no Linear of this model (2-D inputs export "
                                   "as Gemm); used PyTorch dynamic int8 instead")
            say(details["fallback"])
        else:
            ranked = [n for n in ranked if n not in unmapped]
            layers = [n for n in layers if n not in unmapped]
    if backend == "onnxruntime":
        cache: dict[tuple[str, ...], OrtModule] = {}

        def build(kept: list[str]) -> OrtModule:
            key = tuple(kept)
            if key not in cache:
                exclude = [node for layer in kept for node in node_map[layer]]
                q = quantize_onnx_dynamic(float_bytes, per_channel=config.per_channel, nodes_to_exclude=exclude,
                                          op_types=["MatMul"])
                cache[key] = OrtModule(q)
            return cache[key]

        def drop_with_kept(kept: list[str]) -> float:
            d = drop_of(build(kept))
            say(f"fallback: {len(kept)} float layers → drop {d:.5f}")
            return d

        kept, final_drop, trace = fallback_search(ranked, drop_with_kept, config.max_quality_drop)
        result: Any = build(kept)
        result.flop_reference = model
        cache.clear()  # the other candidates' sessions hold a model's worth of memory each
        if unmapped:
            details["kept_float_unsupported"] = unmapped
    else:
        def torch_model(kept: list[str]) -> nn.Module:
            m = copy.deepcopy(model)
            return quantize_dynamic_int8(m, DynamicInt8Config(per_channel=config.per_channel, exclude=tuple(kept)))[0]

        kept, final_drop, trace = fallback_search(
            ranked, lambda k: drop_of(torch_model(k), settings), config.max_quality_drop
        )
        result = torch_model(kept)

    details.update(
        quantized_layers=len(layers) - len(kept),
        kept_layers=[{"layer": n, "why": why(n, i)} for i, n in enumerate(kept)],
        calib_quality_drop=round(final_drop, 6),
        meets_calib_budget=final_drop <= config.max_quality_drop,
        search=[{"kept": k, "drop": round(d, 6)} for k, d in trace],
        most_sensitive=sens_report,
        sensitivity=config.sensitivity,
    )
    if isinstance(result, nn.Module):
        result.accelkit_details = details
    else:
        result.extra.update(details)
    return result, details


def _aware(model: nn.Module, ctx: BuildContext, backend: str) -> Built:
    config = AwareInt8Config(backend=backend)
    config.max_quality_drop = ctx.budget(config.max_quality_drop, share=CALIB_BUDGET_SHARE)
    result, details = quantize_accuracy_aware(model, ctx.workload, ctx.settings, config)
    if not details["meets_calib_budget"]:
        # never hand back a model that breaks the budget on calibration data: the float model instead
        raise ConfigError(
            f"int8-aware: even with every layer in float the calibration drop is {details['calib_quality_drop']:.4g} "
            f"> budget {config.max_quality_drop:.4g}; use the float model"
        )
    return Built(result, ctx.settings, details, compute_dtype="int8")


@register_technique("int8-aware", group="precision", description="accuracy-aware int8 in ONNX Runtime: "
                    "SmoothQuant, sensitivity, fp32 fallback until the budget is met",
                    needs=("onnx-exportable",), produces=OrtModule.form, voids=("autocast",), compute_dtype="int8",
                    available=ORT_AVAILABLE)
def _int8_aware(model: nn.Module, ctx: BuildContext) -> Built:
    return _aware(model, ctx, "onnxruntime")


@register_technique("int8-aware-torch", group="precision", description="accuracy-aware dynamic int8 in "
                    "PyTorch, fp32 fallback until the budget is met", produces="quantized", compute_dtype="int8")
def _int8_aware_torch(model: nn.Module, ctx: BuildContext) -> Built:
    return _aware(model, ctx, "torch")
