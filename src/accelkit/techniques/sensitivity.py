"""Per-layer int8 sensitivity and the mixed-precision fallback search that uses it.

Quantizing one layer at a time (simulated: per-tensor uint8 input, per-channel int8
weight, as ONNX Runtime and fbgemm do) ranks layers by the quality they cost; the
fallback then keeps the fewest most-sensitive layers in float that meet the budget.
Costs one calibration pass per layer plus a few full checks (log2 of the layer count).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["fake_quant_linear", "layer_sensitivity", "local_sqnr_db", "fallback_search"]


def _fq_input_per_tensor_uint8(x: torch.Tensor) -> torch.Tensor:
    # ONNX Runtime's DynamicQuantizeLinear: asymmetric uint8 over [min(x,0), max(x,0)]
    lo, hi = x.min().clamp(max=0), x.max().clamp(min=0)
    scale = ((hi - lo) / 255).clamp(min=1e-8)
    zp = torch.round(-lo / scale)
    return (torch.clamp(torch.round(x / scale) + zp, 0, 255) - zp) * scale


def _fq_weight_per_channel_int8(w: torch.Tensor) -> torch.Tensor:
    scale = (w.abs().amax(1, keepdim=True) / 127).clamp(min=1e-8)  # (out, 1)
    return torch.clamp(torch.round(w / scale), -127, 127) * scale


@contextmanager
def fake_quant_linear(linear: nn.Linear):
    """Within the block, ``linear`` computes as if int8 (input per tensor, weight per channel)."""
    original = linear.weight.data
    linear.weight.data = _fq_weight_per_channel_int8(original.float()).to(original.dtype)
    handle = linear.register_forward_pre_hook(lambda mod, args: (_fq_input_per_tensor_uint8(args[0]), *args[1:]))
    try:
        yield
    finally:
        handle.remove()
        linear.weight.data = original


def _linear_of(module: nn.Module) -> nn.Linear:
    # SmoothedLinear and similar wrappers keep the real Linear as ``.linear``
    inner = getattr(module, "linear", module)
    return inner if isinstance(inner, nn.Linear) else module


def layer_sensitivity(
    model: nn.Module,
    layers: Sequence[str],
    quality_drop: Callable[[nn.Module], float],
    progress: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Quality drop with only ``layer`` simulated in int8, for each layer (larger = more sensitive)."""
    drops: dict[str, float] = {}
    for i, name in enumerate(layers):
        with fake_quant_linear(_linear_of(model.get_submodule(name))):
            drops[name] = float(quality_drop(model))
        if progress:
            progress(f"sensitivity {i + 1}/{len(layers)}: {name} {drops[name]:.5f}")
    return drops


@torch.no_grad()
def local_sqnr_db(model: nn.Module, layers: Sequence[str], run_calibration: Callable[[nn.Module], None]) -> dict[str, float]:
    """Each layer's own output SQNR (dB) when its input and weight are simulated in int8, in one pass.

    A cheap proxy for end-to-end sensitivity (one calibration pass instead of one per layer):
    low SQNR = sensitive. Errors do not propagate between layers here.
    """
    signal = dict.fromkeys(layers, 0.0)
    noise = dict.fromkeys(layers, 0.0)
    hooks = []

    def hook_for(name: str, linear: nn.Linear):
        w_q = _fq_weight_per_channel_int8(linear.weight.float())

        def hook(mod, args, out):
            x = args[0].float()
            y = torch.nn.functional.linear(x, linear.weight.float(), None)
            y_q = torch.nn.functional.linear(_fq_input_per_tensor_uint8(x), w_q, None)
            signal[name] += float(y.pow(2).sum())
            noise[name] += float((y - y_q).pow(2).sum())
        return hook

    for name in layers:
        linear = _linear_of(model.get_submodule(name))
        # hook the inner Linear: a wrapper (SmoothedLinear) has already scaled its input
        hooks.append(linear.register_forward_hook(hook_for(name, linear)))
    try:
        run_calibration(model)
    finally:
        for h in hooks:
            h.remove()
    return {n: 10 * math.log10(max(signal[n], 1e-30) / max(noise[n], 1e-30)) for n in layers}


def fallback_search(
    ranked: Sequence[str], drop_with_kept: Callable[[list[str]], float], budget: float
) -> tuple[list[str], float, list[tuple[int, float]]]:
    """Fewest of the most sensitive layers (``ranked``, most first) to keep in float so drop <= budget.

    Doubling then bisection on the count (assumes keeping more never hurts; the answer is usually
    a handful, so this costs ~2*log2(answer) checks). Returns (kept, drop, trace of (count, drop));
    when even keeping all fails, returns all with the drop measured.
    """
    trace: list[tuple[int, float]] = []
    cache: dict[int, float] = {}

    def drop(k: int) -> float:
        if k not in cache:
            cache[k] = float(drop_with_kept(list(ranked[:k])))
            trace.append((k, cache[k]))
        return cache[k]

    if drop(0) <= budget:
        return [], cache[0], trace
    lo, hi = 0, 1  # invariant: drop(lo) > budget; grow hi until drop(hi) <= budget
    while hi < len(ranked) and drop(hi) > budget:
        lo, hi = hi, min(2 * hi, len(ranked))
    if drop(hi) > budget:
        return list(ranked), cache[hi], trace
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if drop(mid) <= budget:
            hi = mid
        else:
            lo = mid
    return list(ranked[:hi]), cache[hi], trace
