"""Eager PyTorch as a runtime: fp32 modules, bf16/fp16 casts (``CastInputs``), dynamic int8
Linears and SmoothQuant's ``SmoothedLinear``, saved as plain safetensors tensors plus a record
of those layers, and loaded by putting the recorded layers back into a given architecture.

Loading never re-runs a technique: the caller passes the fp32 architecture (built from a
Hugging Face config.json or by an embedded workload's name) and only the recorded layer kinds
are re-applied. Anything else a model holds (compiled graphs, torchao tensor subclasses, a
technique's own wrappers) is refused at save time with ShipError.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from accelkit.errors import SchemaError
from accelkit.runtimes.base import Runtime, RuntimeRecord, ShipError
from accelkit.runtimes.registry import register_runtime

__all__ = ["CastInputs", "SmoothedLinear", "TorchEager", "int8_linear_tensors", "to_float32"]

_CAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


class CastInputs(nn.Module):
    """Runs a low-precision model on float inputs by casting them to its dtype first."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model = model
        self.dtype = dtype

    def _cast(self, v: Any) -> Any:
        return v.to(self.dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*(self._cast(a) for a in args), **{k: self._cast(v) for k, v in kwargs.items()})

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """The cast model's own ``generate`` (causal language models writing text)."""
        return self.model.generate(*(self._cast(a) for a in args), **{k: self._cast(v) for k, v in kwargs.items()})


class SmoothedLinear(nn.Module):
    """``linear(x / s)`` with the weight columns pre-multiplied by ``s``: same output, tamer input."""

    def __init__(self, linear: nn.Linear, scale: torch.Tensor) -> None:
        super().__init__()
        self.linear = linear
        self.register_buffer("inv_scale", (1.0 / scale).to(linear.weight.dtype))
        with torch.no_grad():
            linear.weight.mul_(scale.to(linear.weight.dtype))  # (out, in) * (in,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x * self.inv_scale)


def to_float32(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook of an int8 layer: its kernels take fp32 only, and under bf16/fp16 autocast
    the float layers around it hand over half-precision activations."""
    if args and isinstance(args[0], torch.Tensor) and args[0].dtype in (torch.bfloat16, torch.float16):
        return (args[0].float(), *args[1:])
    return args


def _dynamic_linear() -> type[nn.Module]:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return DynamicLinear


def int8_linear_tensors(name: str, layer: nn.Module) -> dict[str, torch.Tensor]:
    """A dynamic int8 Linear as plain tensors: integer weight, scales and zero points (one, or
    one per output channel) and the float bias, each under ``name``."""
    w, b = layer.weight(), layer.bias()
    if w.qscheme() not in (torch.per_channel_affine, torch.per_channel_symmetric):
        scales, zeros = torch.tensor([w.q_scale()]), torch.tensor([w.q_zero_point()])
    else:
        scales, zeros = w.q_per_channel_scales(), w.q_per_channel_zero_points()
    out = {f"{name}.qweight": w.int_repr().contiguous(), f"{name}.qscale": scales.double().contiguous(),
           f"{name}.qzero": zeros.long().contiguous()}
    if b is not None:
        out[f"{name}.bias"] = b.detach().float().contiguous()
    return out


def _int8_linear(name: str, old: nn.Module, tensors: Mapping[str, torch.Tensor]) -> nn.Module:
    q, scales, zeros = tensors[f"{name}.qweight"], tensors[f"{name}.qscale"], tensors[f"{name}.qzero"]
    if len(scales) == 1:
        weight = torch._make_per_tensor_quantized_tensor(q, float(scales[0]), int(zeros[0]))
    else:
        weight = torch._make_per_channel_quantized_tensor(q, scales, zeros, 0)
    new = _dynamic_linear()(old.in_features, old.out_features, dtype=torch.qint8)
    new.set_weight_bias(weight, tensors.get(f"{name}.bias"))
    new.register_forward_pre_hook(to_float32)
    return new


def _set_child(model: nn.Module, name: str, make: Callable[[nn.Module], nn.Module]) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, make(getattr(parent, child)))


def _refuse_unrecorded(net: nn.Module) -> None:
    """ShipError for what the record of layers cannot describe, naming why and what to choose."""
    from torch._dynamo.eval_frame import OptimizedModule

    named = [(f"{name or 'the model'} ({type(mod).__name__})", mod) for name, mod in net.named_modules()]
    for where, mod in named:  # first: a compiled graph inside a technique's holder is still a graph
        if isinstance(mod, (OptimizedModule, torch.fx.GraphModule)):
            raise ShipError(f"{where} is a compiled graph, which cannot be saved (it is rebuilt by compiling); "
                            "save a plan without compile/int8-static, e.g. int8-dynamic or onnx")
    for where, mod in named:
        if type(mod).__module__.startswith("accelkit.techniques"):
            raise ShipError(f"{where} is a layer of accelkit's {type(mod).__module__} that the saved format does "
                            "not record (data-dependent or structural wrappers such as early exit, routed depth, "
                            "layer skip); save it with that technique's own save function, or choose a plan of "
                            "casts, int8-dynamic, SmoothQuant or ONNX Runtime")


@register_runtime
class TorchEager(Runtime):
    """An eager nn.Module as a runtime; ``model`` is the module itself, which callers keep using."""

    name = "torch"
    form = "eager"
    family = "torch"
    devices = ("cpu", "cuda", "mps", "xpu")
    model_file = "model.safetensors"
    needs_baseline = True

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        first = next(iter(model.parameters()), None)
        self.device = str(first.device) if first is not None else "cpu"
        self.extra: dict[str, Any] = {}

    @classmethod
    def adopt(cls, model: Any) -> TorchEager | None:
        return cls(model) if isinstance(model, nn.Module) else None

    def run(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    def unwrap(self) -> nn.Module:
        return self.model

    def _parts(self) -> tuple[nn.Module, str | None]:
        if isinstance(self.model, CastInputs):  # a bf16/fp16 cast: float inputs are cast at the door
            return self.model.model, str(self.model.dtype).removeprefix("torch.")
        return self.model, None

    def describe(self) -> RuntimeRecord:
        net, cast = self._parts()
        int8 = any(isinstance(m, _dynamic_linear()) for m in net.modules())
        precision = "int8" if int8 else {"bfloat16": "bf16", "float16": "fp16"}.get(cast or "", "fp32")
        return RuntimeRecord(self.name, self.device, precision, 1, torch.get_num_threads(), dict(self.extra))

    @property
    def serialized_size_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors()[0].values())

    def _int8_linears(self) -> dict[str, nn.Module]:
        return {n: m for n, m in self._parts()[0].named_modules() if isinstance(m, _dynamic_linear())}

    def check_saveable(self) -> None:
        """ShipError for what the record of layers cannot describe: compiled graphs, technique
        wrappers, packed or subclassed tensors (torchao weight-only). Copies no tensor."""
        net, _ = self._parts()
        _refuse_unrecorded(net)
        int8 = tuple(f"{n}." for n in self._int8_linears())
        for key, value in net.state_dict().items():
            if key.startswith(int8):  # recorded as an int8 layer's own tensors
                continue
            if type(value) not in (torch.Tensor, nn.Parameter) or value.is_quantized or value.layout != torch.strided:
                raise ShipError(f"tensor {key} is a {type(value).__name__} ({getattr(value, 'dtype', '?')}), which "
                                "cannot ship as plain tensors (torchao weight-only layers); choose a plan of "
                                "casts, int8-dynamic or ONNX Runtime")

    def tensors(self) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
        """(plain tensors, int8 Linear names, SmoothedLinear names) of the model; ShipError for
        anything else (``check_saveable``)."""
        self.check_saveable()
        net, _ = self._parts()
        quant = self._int8_linears()
        tensors: dict[str, torch.Tensor] = {}
        for name, mod in quant.items():
            tensors.update(int8_linear_tensors(name, mod))
        int8 = tuple(f"{n}." for n in quant)
        for key, value in net.state_dict().items():
            if not key.startswith(int8):
                tensors[key] = value.detach().cpu().contiguous().clone()
        smoothed = sorted(n for n, m in net.named_modules() if isinstance(m, SmoothedLinear))
        return tensors, sorted(quant), smoothed

    def save(self, folder: Path) -> dict[str, Any]:
        from safetensors.torch import save_file

        tensors, quantized, smoothed = self.tensors()
        save_file(tensors, str(folder / self.model_file), metadata={"format": "pt"})
        return {"runtime": self.name, "quantized_linears": quantized, "smoothed_linears": smoothed,
                "cast_inputs": self._parts()[1]}

    @classmethod
    def load(cls, folder: Path, fields: Mapping[str, Any], *, baseline: Any = None) -> TorchEager:
        """Put the recorded layers into ``baseline`` (the fp32 architecture, changed in place) and
        load the saved tensors over it, each in its saved dtype."""
        from safetensors.torch import load_file

        if not isinstance(baseline, nn.Module):
            raise SchemaError(f"{folder}: loading a PyTorch model needs its fp32 architecture; pass "
                              "load(path, baseline=<fp32 model>)")
        quantized, smoothed = fields.get("quantized_linears") or [], fields.get("smoothed_linears") or []
        for names in (quantized, smoothed):
            if not isinstance(names, list) or not all(isinstance(q, str) for q in names):
                raise SchemaError(f"{folder}/plan.json: layer names are not a list of strings; re-save the model")
        cast = fields.get("cast_inputs")
        if cast is not None and cast not in _CAST_DTYPES:
            raise SchemaError(f"{folder}/plan.json: cast_inputs {cast!r}; expected bfloat16, float16 or none")
        weights = folder / cls.model_file
        try:
            tensors = load_file(str(weights))
        except Exception as exc:  # SafetensorError (truncated header, bad offsets) is not exported stably
            raise SchemaError(f"{weights} is not a readable safetensors file ({exc}); re-save the model") from exc
        model = baseline.eval()
        try:
            for name in smoothed:  # a scale of 1 here; the saved inv_scale and weights are loaded below
                _set_child(model, name, lambda lin: SmoothedLinear(lin, torch.ones(lin.in_features)))
            for name in quantized:
                _set_child(model, name, lambda old, n=name: _int8_linear(n, old, tensors))
        except (AttributeError, KeyError) as exc:
            raise SchemaError(f"{folder}: a layer named in plan.json does not exist in the architecture or "
                              f"lacks its tensors ({exc}); re-save the model") from exc
        # an int8 layer's tensors (saved and live) are all under its name; the rest load as they are
        int8 = tuple(f"{n}." for n in quantized)
        plain = {k: v for k, v in tensors.items() if not k.startswith(int8)}
        current = model.state_dict(keep_vars=True)
        missing = sorted(k for k in current if not k.startswith(int8) and k not in plain)
        unexpected = sorted(set(plain) - set(current))
        if unexpected or missing:
            raise SchemaError(f"{folder}: the saved tensors do not fit the architecture (unexpected "
                              f"{unexpected[:3]}, missing {missing[:3]}); the baseline differs from the one saved")
        with torch.no_grad():
            for key, value in plain.items():
                target = current[key]
                if target.shape != value.shape:
                    raise SchemaError(f"{folder}: tensor {key} has shape {tuple(value.shape)}, the architecture "
                                      f"{tuple(target.shape)}; the baseline differs from the one saved")
                target.data = value.clone()  # keeps the saved dtype (a bf16 cast stays bf16)
        return cls(CastInputs(model, _CAST_DTYPES[cast]) if cast is not None else model)
