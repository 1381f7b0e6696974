"""OpenVINO as the runtime: the exported ONNX graph compiled by OpenVINO for this CPU, in bf16
where the CPU has native bf16 dot products (AVX512_BF16, AMX) and fp32 elsewhere, served from
as many streams (infer requests side by side, each on a slice of the batch) as a short probe on
calibration batches finds fastest on this machine; ``openvino-int8`` first quantizes the graph with
NNCF's transformer preset (mixed: symmetric weights, asymmetric activations).

Buys OpenVINO's CPU kernels (oneDNN with its own fusions, VNNI and AMX tiles) without writing
any; costs two dependencies of the default install (``openvino``, and ``nncf`` for int8: absent or
not loading, the variants are not offered and say why) and the same export limits as ONNX Runtime. bf16 rounds activations
(cosine ~0.9999); int8 costs more (minilm: cosine ~0.998) and is checked against the budget.
"""

from __future__ import annotations

import functools
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from accelkit.config import Config
from accelkit.errors import ConfigError
from accelkit.runtimes.openvino import OpenVinoConfig, OpenVinoModule
from accelkit.techniques.registry import (
    CALIB_BUDGET_SHARE,
    BuildContext,
    Built,
    needs_package,
    register_technique,
)

__all__ = ["OpenVinoStepConfig", "choose_streams", "openvino_module", "stream_candidates", "quantize_onnx_nncf"]

_OPENVINO_INSTALLED = needs_package("openvino", "openvino")
_NNCF_AVAILABLE = needs_package("nncf", "nncf")


@functools.cache
def _cpu_capabilities() -> tuple[tuple[str, ...], str | None]:
    """OpenVINO's CPU optimization capabilities, or why OpenVINO does not load here (a broken
    install, a missing shared library, no CPU plugin): then the variants are rows with that reason."""
    reason = _OPENVINO_INSTALLED()
    if reason:
        return (), reason
    try:
        import openvino as ov

        return tuple(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")), None
    except Exception as exc:  # any failure to load is a reason, never a crash of env / bench / optimize
        line = next((s for s in str(exc).splitlines() if s.strip()), "")[:200]
        return (), f"openvino is installed but does not load here ({type(exc).__name__}: {line})"


def OPENVINO_AVAILABLE() -> str | None:  # noqa: N802 (an ``available=`` check, named like the others)
    return _cpu_capabilities()[1]


def openvino_module(model: nn.Module, example_inputs: Any, config: OpenVinoConfig) -> OpenVinoModule:
    """Export ``model`` to ONNX and compile it with OpenVINO."""
    from accelkit.export.onnx import export_onnx

    return OpenVinoModule(export_onnx(model, example_inputs), config, flop_reference=model)


def _bf16_native() -> str | None:
    caps, reason = _cpu_capabilities()
    if reason:
        return reason
    return None if "BF16" in caps else "this CPU has no native bf16 (AVX512_BF16 / AMX) for OpenVINO: it would emulate it"


@dataclass
class OpenVinoStepConfig(Config):
    """``streams``: infer requests side by side, each on a slice of the batch (None: the count a
    short probe on calibration batches finds fastest here; the saved plan records the count chosen,
    so loading never probes again)."""

    streams: int | None = None
    version: int = 1

    def __post_init__(self) -> None:
        if self.streams is not None and self.streams < 1:
            raise ConfigError(f"streams={self.streams}: expected None (probe this machine) or >= 1")


def stream_candidates(threads: int) -> list[int]:
    """Stream counts worth probing on ``threads`` compute threads: 1, the powers of two between,
    and one per thread (at most four compiles)."""
    counts = {1, threads}
    n = 2
    while n < threads and len(counts) < 4:
        counts.add(n)
        n *= 2
    return sorted(counts)


def choose_streams(module: OpenVinoModule, ctx: BuildContext, streams: int | None,
                   rounds: int = 3) -> tuple[OpenVinoModule, dict[str, Any]]:
    """``module`` compiled for ``streams`` requests, or for the count that encodes two calibration
    batches fastest (each candidate timed in interleaved rounds, the median kept)."""
    threads = module.describe().threads
    if streams is not None:
        chosen = module if streams == len(module._requests) else module.with_streams(min(streams, threads))
        return chosen, {"streams_from": "the plan"}
    counts = stream_candidates(threads)
    if len(counts) == 1:
        return module, {"streams_from": "one compute thread"}
    modules = {n: module if n == len(module._requests) else module.with_streams(n) for n in counts}
    workload = ctx.workload
    data = workload.calib_data(2 * ctx.batch_size)
    settings = ctx.settings.with_(autocast=None)
    times: dict[int, list[float]] = {n: [] for n in counts}
    for m in modules.values():
        workload.predict(m, data, settings)  # the warm-up: first inference allocates
    for r in range(rounds):
        for n in counts[r % len(counts):] + counts[: r % len(counts)]:
            start = time.perf_counter()
            workload.predict(modules[n], data, settings)
            times[n].append(time.perf_counter() - start)
    medians = {n: statistics.median(t) for n, t in times.items()}
    best = min(medians, key=medians.__getitem__)
    return modules[best], {"streams_from": "probe", "streams_probe_s": {str(n): round(t, 5) for n, t in medians.items()}}


def _finish(module: OpenVinoModule, ctx: BuildContext, config: OpenVinoStepConfig, compute_dtype: str) -> Built:
    module, how = choose_streams(module, ctx, config.streams)
    module.extra.update(how)
    streams = module.describe().streams
    # the count chosen for this machine, so the saved plan replays it rather than probing again
    return Built(module, ctx.settings, module.describe().to_dict(), compute_dtype=compute_dtype,
                 config=OpenVinoStepConfig(streams=streams).to_dict())


_OV = {"needs": ("onnx-exportable",), "accepts": ("eager",), "produces": OpenVinoModule.form, "voids": ("autocast",),
       "config": OpenVinoStepConfig}


@register_technique("openvino", group="runtime", description="OpenVINO runtime, fp32, streams probed per machine",
                    available=OPENVINO_AVAILABLE, **_OV)
def _openvino(model: nn.Module, ctx: BuildContext, config: OpenVinoStepConfig) -> Built:
    module = openvino_module(model, ctx.example_inputs(), OpenVinoConfig(precision="f32"))
    return _finish(module, ctx, config, "fp32")


@register_technique("openvino-bf16", group="runtime", description="OpenVINO runtime, bf16 inference precision "
                    "(native bf16 CPUs), streams probed per machine", compute_dtype="bf16", available=_bf16_native,
                    **_OV)
def _openvino_bf16(model: nn.Module, ctx: BuildContext, config: OpenVinoStepConfig) -> Built:
    module = openvino_module(model, ctx.example_inputs(), OpenVinoConfig(precision="bf16"))
    return _finish(module, ctx, config, "bf16")


_ACTIVATIONS = ("Gelu", "FastGelu", "Erf", "Tanh", "Sigmoid")
_LINEAR = ("MatMul", "Gemm")


def activation_fed_matmuls(onnx_bytes: bytes, depth: int = 4) -> list[str]:
    """Names of the weight MatMuls (and Gemms) whose input comes from an activation function within ``depth``
    ops: a transformer's FFN down-projections, whose inputs (GELU outputs) carry the outliers that
    per-tensor int8 activations round worst. Read from the graph, never from a model's name."""
    import onnx

    graph = onnx.load_from_string(onnx_bytes).graph
    producer = {out: node for node in graph.node for out in node.output}
    weights = {i.name for i in graph.initializer}

    def fed_by_activation(name: str, left: int) -> bool:
        node = producer.get(name)
        if node is None or left == 0 or node.op_type in _LINEAR:  # never through another layer
            return False
        return node.op_type in _ACTIVATIONS or any(fed_by_activation(i, left - 1) for i in node.input if i not in weights)

    return [n.name for n in graph.node if n.op_type in _LINEAR and len(n.input) >= 2 and n.input[1] in weights
            and fed_by_activation(n.input[0], depth)]


def quantize_onnx_nncf(onnx_bytes: bytes, calib_feeds: list[dict[str, np.ndarray]], *, transformer: bool = True,
                       keep_float: list[str] | None = None) -> bytes:
    """NNCF post-training int8 of an ONNX graph (QDQ nodes, which OpenVINO runs as int8 kernels).

    ``calib_feeds``: input dicts, one sample each (unpadded sequences calibrate best).
    ``keep_float``: graph node names NNCF leaves unquantized (its ignored scope).
    ``transformer=True`` is NNCF's transformer model type with the MIXED preset: SmoothQuant on the MatMul inputs, softmax,
    layer norms and the attention's score MatMuls left in float, fast bias correction.
    """
    if not calib_feeds:
        raise ConfigError("calibration set is empty: NNCF int8 needs at least one sample of inputs")
    import nncf
    import onnx

    from accelkit.quiet import quiet

    with quiet(name="nncf"):  # NNCF draws its own progress bars
        # the transformer preset is MIXED (symmetric weights, asymmetric activations: GELU and
        # softmax outputs are one-sided); said explicitly so an NNCF default change cannot move it
        quantized = nncf.quantize(onnx.load_from_string(onnx_bytes), nncf.Dataset(calib_feeds),
                                  preset=nncf.QuantizationPreset.MIXED if transformer else None,
                                  model_type=nncf.ModelType.TRANSFORMER if transformer else None,
                                  subset_size=len(calib_feeds),
                                  ignored_scope=nncf.IgnoredScope(names=list(keep_float), validate=False)
                                  if keep_float else None)
    return quantized.SerializeToString()


def _int8_available() -> str | None:
    return OPENVINO_AVAILABLE() or _NNCF_AVAILABLE()


@register_technique("openvino-int8", group="runtime", description="NNCF post-training int8 (SmoothQuant, bias "
                    "correction) served by OpenVINO, streams probed per machine; checked against the budget",
                    compute_dtype="int8", available=_int8_available, **_OV)
def _openvino_int8(model: nn.Module, ctx: BuildContext, config: OpenVinoStepConfig) -> Built:
    from accelkit.export.onnx import export_onnx, named_numpy_inputs

    workload = ctx.workload
    samples = [named_numpy_inputs(inputs) for inputs in ctx.calib_batches(256, batch_size=1)]  # one sample each
    graph = export_onnx(model, ctx.example_inputs())
    precision = "bf16" if _bf16_native() is None else "f32"  # the float parts in bf16 where that is native
    # the budget on calibration data, never on the held-out evaluation data
    calib = workload.calib_data(256)
    fp32 = ctx.settings.with_(autocast=None)
    reference = workload.predict(model, calib, fp32)
    budget = ctx.budget(0.01, share=CALIB_BUDGET_SHARE)
    # every MatMul in int8 first; over the budget, once more with the FFN down-projections (the
    # layers int8 activations hurt most) in float. NNCF's accuracy control ranks groups one by one
    # and did not rescue minilm (benchmarks/explore/nncf_accuracy_control.py): this is one retry.
    tries: list[tuple[str, list[str]]] = [("every MatMul", [])]
    down = activation_fed_matmuls(graph)
    if down:
        tries.append((f"{len(down)} FFN down-projections in float", down))
    drops = []
    for what, keep_float in tries:
        module = OpenVinoModule(quantize_onnx_nncf(graph, samples, keep_float=keep_float),
                                OpenVinoConfig(precision=precision), flop_reference=model,
                                details={"quantization": "nncf post-training int8, transformer model type, mixed "
                                         f"preset; {what}", "calib_samples": len(samples),
                                         "float_matmuls": len(keep_float)})
        drop = workload.quality_drop(workload.quality(workload.predict(module, calib, fp32), reference, calib),
                                     workload.quality(reference, reference, calib))
        drops.append(f"{drop:.4g} ({what})")
        if drop <= budget:
            module.extra.update(calib_quality_drop=round(drop, 6), budget=budget)
            return _finish(module, ctx, config, "int8")
    raise ConfigError(f"openvino-int8: the calibration drop in {workload.primary_metric}, {' then '.join(drops)}, "
                      f"is over the budget {budget:.4g}; use int8-aware, which keeps the sensitive layers in float")
