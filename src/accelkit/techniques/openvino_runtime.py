"""OpenVINO as the runtime: the exported ONNX graph compiled by OpenVINO for this CPU, in bf16
where the CPU has native bf16 dot products (AVX512_BF16, AMX) and fp32 elsewhere, served from
one stream per core; ``openvino-int8`` first quantizes the graph with NNCF.

Buys OpenVINO's CPU kernels (oneDNN with its own fusions, VNNI and AMX tiles) without writing
any; costs an optional dependency (``pip install openvino``, and ``nncf`` for int8: absent, the
variants are not offered) and the same export limits as ONNX Runtime. bf16 rounds activations
(cosine ~0.9999); int8 costs more (minilm: cosine ~0.998) and is checked against the budget.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from accelkit.errors import ConfigError
from accelkit.runtimes.openvino import OpenVinoConfig, OpenVinoModule
from accelkit.techniques.registry import (
    CALIB_BUDGET_SHARE,
    BuildContext,
    Built,
    needs_package,
    register_technique,
)

__all__ = ["openvino_module", "quantize_onnx_nncf"]

OPENVINO_AVAILABLE = needs_package("openvino", "openvino")
_NNCF_AVAILABLE = needs_package("nncf", "nncf")


def openvino_module(model: nn.Module, example_inputs: Any, config: OpenVinoConfig) -> OpenVinoModule:
    """Export ``model`` to ONNX and compile it with OpenVINO."""
    from accelkit.export.onnx import export_onnx

    return OpenVinoModule(export_onnx(model, example_inputs), config, flop_reference=model)


def _bf16_native() -> str | None:
    reason = OPENVINO_AVAILABLE()
    if reason:
        return reason
    import openvino as ov

    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return None if "BF16" in caps else "this CPU has no native bf16 (AVX512_BF16 / AMX) for OpenVINO"


_OV = {"needs": ("onnx-exportable",), "accepts": ("eager",), "produces": OpenVinoModule.form, "voids": ("autocast",)}


@register_technique("openvino", group="runtime", description="OpenVINO runtime, fp32, one stream per core",
                    available=OPENVINO_AVAILABLE, **_OV)
def _openvino(model: nn.Module, ctx: BuildContext) -> Built:
    module = openvino_module(model, ctx.example_inputs(), OpenVinoConfig(precision="f32"))
    return Built(module, ctx.settings, module.describe().to_dict())


@register_technique("openvino-bf16", group="runtime", description="OpenVINO runtime, bf16 inference precision "
                    "(native bf16 CPUs), one stream per core", compute_dtype="bf16", available=_bf16_native, **_OV)
def _openvino_bf16(model: nn.Module, ctx: BuildContext) -> Built:
    module = openvino_module(model, ctx.example_inputs(), OpenVinoConfig(precision="bf16"))
    return Built(module, ctx.settings, module.describe().to_dict(), compute_dtype="bf16")


def quantize_onnx_nncf(onnx_bytes: bytes, calib_feeds: list[dict[str, np.ndarray]], *, transformer: bool = True) -> bytes:
    """NNCF post-training int8 of an ONNX graph (QDQ nodes, which OpenVINO runs as int8 kernels).

    ``calib_feeds``: input dicts, one sample each (unpadded sequences calibrate best).
    ``transformer=True`` is NNCF's transformer preset: SmoothQuant on the MatMul inputs, softmax,
    layer norms and the attention's score MatMuls left in float, fast bias correction.
    """
    if not calib_feeds:
        raise ConfigError("calibration set is empty: NNCF int8 needs at least one sample of inputs")
    import nncf
    import onnx

    from accelkit.quiet import quiet

    with quiet(name="nncf"):  # NNCF draws its own progress bars
        quantized = nncf.quantize(onnx.load_from_string(onnx_bytes), nncf.Dataset(calib_feeds),
                                  model_type=nncf.ModelType.TRANSFORMER if transformer else None,
                                  subset_size=len(calib_feeds))
    return quantized.SerializeToString()


def _int8_available() -> str | None:
    return OPENVINO_AVAILABLE() or _NNCF_AVAILABLE()


@register_technique("openvino-int8", group="runtime", description="NNCF post-training int8 (SmoothQuant, bias "
                    "correction) served by OpenVINO, one stream per core; checked against the budget",
                    compute_dtype="int8", available=_int8_available, **_OV)
def _openvino_int8(model: nn.Module, ctx: BuildContext) -> Built:
    from accelkit.export.onnx import _as_named_inputs, export_onnx

    workload = ctx.workload
    samples = []
    for inputs in ctx.calib_batches(256, batch_size=1):  # the exporter's input names, one sample each
        names, tensors = _as_named_inputs(inputs)
        samples.append({n: t.numpy() for n, t in zip(names, tensors, strict=True)})
    q = quantize_onnx_nncf(export_onnx(model, ctx.example_inputs()), samples)
    precision = "bf16" if _bf16_native() is None else "f32"  # the float parts in bf16 where that is native
    module = OpenVinoModule(q, OpenVinoConfig(precision=precision), flop_reference=model,
                            details={"quantization": "nncf post-training int8, transformer preset",
                                     "calib_samples": len(samples)})
    # the budget on calibration data, never on the held-out evaluation data
    calib = workload.calib_data(256)
    fp32 = ctx.settings.with_(autocast=None)
    reference = workload.predict(model, calib, fp32)
    drop = workload.quality_drop(workload.quality(workload.predict(module, calib, fp32), reference, calib),
                                 workload.quality(reference, reference, calib))
    budget = ctx.budget(0.01, share=CALIB_BUDGET_SHARE)
    if drop > budget:
        # NNCF's accuracy control does not rescue it: its error is spread over every layer
        # (benchmarks/explore/nncf_accuracy_control.py), so the answer is a plan that keeps float
        raise ConfigError(f"openvino-int8: the calibration drop {drop:.4g} in {workload.primary_metric} is over the "
                          f"budget {budget:.4g}; use int8-aware, which keeps the sensitive layers in float")
    module.extra.update(calib_quality_drop=round(drop, 6), budget=budget)
    return Built(module, ctx.settings, module.describe().to_dict(), compute_dtype="int8")
