"""ONNX Runtime as the runtime: export the float model and serve it from an ORT session, in fp32
or quantized to int8 by ONNX Runtime's own quantizers, on the run's device.

Buys ORT's fused kernels and graph optimizations; costs an export (models with data-dependent
control flow do not export) and torch-side effects (autocast, torch int8 modules) no longer apply.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from accelkit.runtimes.onnxruntime import OrtModule
from accelkit.runtimes.registry import runtime_serving
from accelkit.techniques.registry import BuildContext, Built, needs_package, register_technique

ORT_AVAILABLE = needs_package("onnxruntime", "onnxruntime")  # the available= check of the ORT variants

__all__ = ["ORT_AVAILABLE"]


# ORT takes the float eager model (pruned or distilled ones too): a torch-quantized or bf16-cast
# model does not export to a graph ORT quantizes, and autocast set before export is ignored
_ORT = {"needs": ("onnx-exportable",), "accepts": ("eager",), "produces": OrtModule.form, "voids": ("autocast",),
        "available": ORT_AVAILABLE}


def _served(onnx_bytes: bytes, model: nn.Module, ctx: BuildContext, dtype: str = "fp32",
            details: dict[str, Any] | None = None) -> Built:
    """The graph served by the ONNX Runtime that runs on the run's device (CPU, CUDA …)."""
    session_type = runtime_serving(OrtModule.family, ctx.settings.device)
    module = session_type(onnx_bytes, details=details, flop_reference=model, device=ctx.settings.device)
    return Built(module, ctx.settings, module.describe().to_dict(), compute_dtype=dtype)


@register_technique("onnx", group="runtime", description="ONNX export, ONNX Runtime fp32 (all graph optimizations)",
                    **_ORT)
def _onnx(model: nn.Module, ctx: BuildContext) -> Built:
    from accelkit.export.onnx import export_onnx

    return _served(export_onnx(model, ctx.example_inputs()), model, ctx)


@register_technique("onnx-int8-dynamic", group="runtime", description="ONNX Runtime quantize_dynamic with its "
                    "defaults (per-tensor weights): what Optimum users get", compute_dtype="int8", **_ORT)
def _onnx_int8_dynamic(model: nn.Module, ctx: BuildContext) -> Built:
    from accelkit.export.onnx import export_onnx, quantize_onnx_dynamic

    q = quantize_onnx_dynamic(export_onnx(model, ctx.example_inputs()))
    return _served(q, model, ctx, "int8", {"quantization": "onnxruntime dynamic, per-tensor weights"})


# min-max static ranges collapse on transformer activations with outliers (cosine drop 0.65 on
# minilm in optimize screening): text models use int8-aware instead, so this one needs tensor inputs
@register_technique("onnx-int8-static", group="runtime", description="ONNX Runtime static int8 (QDQ, per-channel, "
                    "min-max calibrated on calibration data)", compute_dtype="int8",
                    **{**_ORT, "needs": ("onnx-exportable", "tensor-inputs")})
def _onnx_int8_static(model: nn.Module, ctx: BuildContext) -> Built:
    from accelkit.export.onnx import export_onnx, quantize_onnx_static

    batches = ctx.calib_batches(512, batch_size=max(ctx.batch_size, 64))[:16]
    q = quantize_onnx_static(export_onnx(model, ctx.example_inputs()), batches, method="minmax")
    details = {"quantization": "onnxruntime static QDQ, min-max", "calib_batches": len(batches)}
    return _served(q, model, ctx, "int8", details)
