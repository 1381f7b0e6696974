"""Mixed precision for training: bf16/fp16 autocast and fp16 dynamic loss scaling.

Buys: matmuls in 16-bit (2x the fp32 peak on AVX512-BF16 CPUs, tensor cores on GPUs).
Costs: rounding in activations; fp16 also needs a GradScaler, whose overflowed steps are skipped.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from accelkit.errors import DeviceUnavailableError

__all__ = ["autocast_context", "make_grad_scaler", "scaler_skipped_step"]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_context(precision: str, device_type: str) -> contextlib.AbstractContextManager[Any]:
    """The autocast region for ``precision`` (a no-op for fp32). The model stays fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16" and device_type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceUnavailableError(
            "precision='bf16' needs a GPU with bf16 support (Ampere or newer); use precision='fp16'"
        )
    return torch.autocast(device_type=device_type, dtype=_DTYPES[precision])


def make_grad_scaler(precision: str, device_type: str) -> torch.amp.GradScaler | None:
    """A dynamic loss scaler for fp16 (start 65536, halve on overflow); None otherwise.

    bf16 has fp32's exponent range, so it needs no scaling.
    """
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device_type)


def scaler_skipped_step(scale_before: float, scaler: torch.amp.GradScaler) -> bool:
    """True when the last ``scaler.update()`` lowered the scale, i.e. it found inf/NaN
    gradients and ``scaler.step`` skipped the optimizer step."""
    return scaler.get_scale() < scale_before
