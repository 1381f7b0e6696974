"""Post-training int8 quantization in PyTorch: dynamic (Linear/LSTM/GRU) and static (PT2E, x86).

Dynamic int8 stores weights as int8 (per output channel) and quantizes activations per
batch at run time: no calibration, 4x smaller Linear weights, but fbgemm's 7-bit
activation range loses fidelity on transformers. Static int8 calibrates activation
ranges on workload data, folds batch norm, and needs torch.compile to reach fused kernels.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from accelkit._lazy import require
from accelkit.config import Config
from accelkit.errors import ConfigError
from accelkit.runtimes.torch_eager import to_float32
from accelkit.techniques.registry import BuildContext, Built, register_technique

__all__ = [
    "DynamicInt8Config",
    "StaticInt8Config",
    "quantize_dynamic_int8",
    "quantize_static_int8",
    "sqnr_db",
]

_DYNAMIC_TYPES = {"Linear": nn.Linear, "LSTM": nn.LSTM, "GRU": nn.GRU}
_OBSERVERS = ("histogram", "minmax")


def sqnr_db(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB (PyTorch's quantization tests want > 30 dB)."""
    ref = reference.detach().float()
    noise = (ref - approx.detach().float()).pow(2).mean()
    return float(10 * torch.log10(ref.pow(2).mean() / noise.clamp(min=1e-30)))


@dataclass
class DynamicInt8Config(Config):
    """``module_types``: which layer types to convert; ``exclude``: module names kept in float."""

    per_channel: bool = True
    module_types: tuple[str, ...] = ("Linear", "LSTM", "GRU")
    exclude: tuple[str, ...] = ()
    version: int = 1

    def __post_init__(self) -> None:
        self.module_types = tuple(self.module_types)
        self.exclude = tuple(self.exclude)
        bad = [t for t in self.module_types if t not in _DYNAMIC_TYPES]
        if bad or not self.module_types:
            raise ConfigError(f"module_types={list(self.module_types)}: expected a non-empty subset of {list(_DYNAMIC_TYPES)}")


def _qao():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import torch.ao.quantization as tq
    return tq


def quantize_dynamic_int8(model: nn.Module, config: DynamicInt8Config | None = None) -> tuple[nn.Module, dict]:
    """Dynamic int8 copy-in-place of ``model``; returns (model, report).

    The report lists converted layers and float layers left as they were (no dynamic
    int8 kernel for them, e.g. Conv2d), so nothing is silently called int8.
    """
    config = config or DynamicInt8Config()
    tq = _qao()
    wanted = tuple(_DYNAMIC_TYPES[t] for t in config.module_types)
    spec: dict[str, Any] = {}
    unsupported: list[str] = []
    for name, mod in model.named_modules():
        if not name or name in config.exclude:
            continue
        if isinstance(mod, wanted):
            linear = isinstance(mod, nn.Linear)
            spec[name] = tq.per_channel_dynamic_qconfig if (linear and config.per_channel) else tq.default_dynamic_qconfig
        elif isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            unsupported.append(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = tq.quantize_dynamic(model, spec, inplace=True) if spec else model
    for name in spec:
        quantized.get_submodule(name).register_forward_pre_hook(to_float32)
    report = {
        "converted": sorted(spec),
        "kept_float_unsupported": unsupported,
        "kept_float_excluded": list(config.exclude),
        "per_channel": config.per_channel,
    }
    return quantized, report


@dataclass
class StaticInt8Config(Config):
    """PT2E static int8 with the x86 Inductor quantizer (uint8 activations, per-channel int8 weights).

    ``observer``: activation range from a "histogram" (default, clips outliers) or plain "minmax".
    ``compile``: lower the quantized graph with torch.compile (fused int8 kernels); without it the
    model runs quantize/dequantize ops in eager mode (correct, but slow: for tests).
    """

    observer: str = "histogram"
    compile: bool = True
    calib_batches: int = 8
    version: int = 1

    def __post_init__(self) -> None:
        if self.observer not in _OBSERVERS:
            raise ConfigError(f"observer={self.observer!r}: expected one of {_OBSERVERS}")
        if self.calib_batches < 1:
            raise ConfigError(f"calib_batches={self.calib_batches}: expected >= 1")


def _x86_quantizer(observer: str):
    xiq = require("torchao.quantization.pt2e.quantizer.x86_inductor_quantizer", "torchao")
    quantizer = xiq.X86InductorQuantizer()
    qconfig = xiq.get_default_x86_inductor_quantization_config()
    if observer == "minmax":
        import dataclasses

        from torchao.quantization.pt2e import MinMaxObserver

        act = dataclasses.replace(
            qconfig.input_activation, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12)
        )
        qconfig = dataclasses.replace(qconfig, input_activation=act, output_activation=act)
    quantizer.set_global(qconfig)
    return quantizer


def quantize_static_int8(
    model: nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    calib_batches: Iterable[tuple[torch.Tensor, ...]],
    config: StaticInt8Config | None = None,
) -> tuple[Callable, dict]:
    """Static int8 through PT2E: export (dynamic batch) → fold BN → observe → convert [→ compile].

    ``example_inputs`` and each calibration batch are tuples of positional tensors.
    Raises ConfigError for an empty calibration set or batches whose shape the model rejects.
    """
    config = config or StaticInt8Config()
    pt2e = require("torchao.quantization.pt2e.quantize_pt2e", "torchao")
    from torchao.quantization.pt2e import move_exported_model_to_eval

    batches = [b if isinstance(b, tuple) else (b,) for b in calib_batches][: config.calib_batches]
    if not batches:
        raise ConfigError("calibration set is empty: pass at least one batch of representative inputs")
    model.eval()
    batch_dim = torch.export.Dim("batch", min=1, max=1 << 16)
    dynamic_shapes = tuple({0: batch_dim} for _ in example_inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported = torch.export.export(model, example_inputs, dynamic_shapes=dynamic_shapes).module()
        prepared = pt2e.prepare_pt2e(exported, _x86_quantizer(config.observer))  # folds conv+BN first
        with torch.no_grad():
            for i, batch in enumerate(batches):
                try:
                    prepared(*batch)
                except Exception as exc:
                    shapes = [tuple(t.shape) for t in batch]
                    want = [tuple(t.shape) for t in example_inputs]
                    raise ConfigError(
                        f"calibration batch {i} with shapes {shapes} does not fit the model "
                        f"(example inputs {want}): {str(exc).splitlines()[0][:160]}"
                    ) from exc
        converted = pt2e.convert_pt2e(prepared)
        move_exported_model_to_eval(converted)
    n_quant = sum(
        1 for n in converted.graph.nodes
        if n.op == "call_function" and "quantize_per_tensor" in str(n.target) and "dequantize" not in str(n.target)
    )
    report = {"observer": config.observer, "calib_batches": len(batches), "quantize_nodes": n_quant,
              "batch_norm_folded": True, "compiled": config.compile}
    if n_quant == 0:
        report["note"] = "no layer was quantized (no Conv/Linear the x86 quantizer supports): model is float"
    if config.compile:
        from accelkit.techniques.compile import compile_model

        converted = compile_model(converted)
    return converted, report


@register_technique("int8-dynamic", group="precision", description="dynamic int8 Linear/LSTM/GRU, per-channel "
                    "weights (PyTorch)", accepts=("eager", "dynamic"), produces="quantized", compute_dtype="int8")
def _int8_dynamic(model: nn.Module, ctx: BuildContext) -> Built:
    model, report = quantize_dynamic_int8(model)
    if not report["converted"]:
        raise ConfigError(
            "int8-dynamic converted no layer (the model has no Linear/LSTM/GRU); it would be a float model "
            "called int8 — use int8-static for conv models"
        )
    details = {"converted_layers": len(report["converted"]), "kept_float_unsupported": report["kept_float_unsupported"]}
    return Built(model, ctx.settings, details, compute_dtype="int8")


@register_technique("int8-static", group="precision", description="static int8 (PT2E, x86 Inductor quantizer, "
                    "BN folded, compiled)", needs=("tensor-inputs",), produces="graph", compute_dtype="int8",
                    saveable=False)  # a compiled graph: rebuilt by compiling, never saved
def _int8_static(model: nn.Module, ctx: BuildContext) -> Built:
    import time

    from accelkit.techniques.compile import WarmedModule

    # calibrate in batches of >= 64 whatever the run's batch size: 8 batches of 1 image would
    # see too little data, and a size-1 example would make export specialize the batch axis to 1
    batches = [b if isinstance(b, tuple) else (b,) for b in ctx.calib_batches(2048, batch_size=max(ctx.batch_size, 64))]
    if not batches:
        raise ConfigError(f"workload {ctx.workload.name!r} has no calibration data for int8-static")
    example = tuple(t[:2] for t in batches[0])
    start = time.perf_counter()
    qmodel, report = quantize_static_int8(model, example, batches, StaticInt8Config(observer="minmax"))
    report["quantize_s"] = round(time.perf_counter() - start, 2)
    runner = WarmedModule(qmodel)
    report["compile_s"] = runner.warm_up(ctx)
    return Built(runner, ctx.settings, report, compute_dtype="int8")
