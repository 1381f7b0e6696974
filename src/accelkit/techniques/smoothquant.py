"""SmoothQuant: move activation outliers into the weights before int8 quantization.

Transformer activations have a few channels 10-100x larger than the rest, which wreck a
per-tensor int8 scale. Dividing those input channels by ``s`` and multiplying the weight
columns by ``s`` leaves the float output unchanged but makes both easy to quantize. Here
one elementwise multiply is added in front of the Linear (a small cost; BERT's post-LN
residual also reads the LayerNorm output, so folding into the LayerNorm would be wrong there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from accelkit.config import Config
from accelkit.errors import ConfigError
from accelkit.runtimes.torch_eager import SmoothedLinear

__all__ = ["SmoothQuantConfig", "collect_input_absmax", "apply_smoothquant_"]

FilterFn = Callable[[nn.Module, str], bool]


@dataclass
class SmoothQuantConfig(Config):
    """``alpha``: how much of the outlier range moves to the weights (0: none, 1: all; 0.5 in the paper)."""

    alpha: float = 0.5
    version: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha={self.alpha}: expected a value in [0, 1] (0.5 is the usual choice)")


def _default_filter(module: nn.Module, fqn: str) -> bool:
    return isinstance(module, nn.Linear)


@torch.no_grad()
def collect_input_absmax(
    model: nn.Module, run_calibration: Callable[[nn.Module], None], filter_fn: FilterFn | None = None
) -> dict[str, torch.Tensor]:
    """Per-input-channel max |x| of each selected Linear over ``run_calibration(model)``."""
    filter_fn = filter_fn or _default_filter
    absmax: dict[str, torch.Tensor] = {}
    hooks = []

    def lin_hook(name: str):
        def hook(mod, inp, out):
            x = inp[0]
            amax = x.detach().abs().reshape(-1, x.shape[-1]).amax(0).float()  # (in_features,)
            absmax[name] = amax if name not in absmax else torch.maximum(absmax[name], amax)
        return hook

    for name, mod in model.named_modules():
        if filter_fn(mod, name):
            hooks.append(mod.register_forward_hook(lin_hook(name)))
    try:
        run_calibration(model)
    finally:
        for h in hooks:
            h.remove()
    if not absmax:
        raise ConfigError("calibration run reached no selected Linear layer; check the data and filter_fn")
    return absmax


def _set_submodule(model: nn.Module, fqn: str, new: nn.Module) -> None:
    parent_name, _, child = fqn.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


@torch.no_grad()
def apply_smoothquant_(
    model: nn.Module, absmax: dict[str, torch.Tensor], config: SmoothQuantConfig | None = None
) -> dict[str, dict]:
    """Smooth every Linear named in ``absmax`` in place; returns per-layer facts for the report.

    s_j = max|x_j|^alpha / max|W_:,j|^(1-alpha) per input channel j (SmoothQuant, eq. 4).
    """
    config = config or SmoothQuantConfig()
    facts: dict[str, dict] = {}
    for name, amax in absmax.items():
        linear = model.get_submodule(name)
        w = linear.weight.abs().amax(0).float()  # (in_features,)
        s = (amax.clamp(min=1e-5).pow(config.alpha) / w.clamp(min=1e-5).pow(1 - config.alpha)).clamp(min=1e-5)
        _set_submodule(model, name, SmoothedLinear(linear, s))
        facts[name] = {
            "outlier_ratio": round(float(amax.max() / amax.median().clamp(min=1e-8)), 2),
            "scale_max": round(float(s.max()), 3),
        }
    return facts
