"""Up-front checks on a user workload's tensors.

A NaN in the inputs gives no error anywhere downstream: accuracy looks normal, ``cosine_mean``
becomes nan, and int8 calibration fails with an ONNX "max diff nan" that never mentions the
input. One scan when the workload is built names the tensor instead.
"""

from __future__ import annotations

from typing import Any

import torch

from accelkit.errors import ConfigError

__all__ = ["check_finite_tensors"]


def check_finite_tensors(workload: str, **tensors: Any) -> None:
    """ConfigError naming the first floating tensor in ``tensors`` that holds NaN or Inf."""
    for field, value in tensors.items():
        if not isinstance(value, torch.Tensor) or not (value.is_floating_point() or value.is_complex()):
            continue
        bad = ~torch.isfinite(value)
        if bad.any():
            n_nan = int(torch.isnan(value).sum())
            n_inf = int(bad.sum()) - n_nan
            row = int(bad.reshape(len(value), -1).any(dim=1).nonzero()[0]) if value.dim() else 0
            raise ConfigError(
                f"workload {workload!r}: {field} holds {n_nan} NaN and {n_inf} Inf values (first in row {row}); "
                "clean or drop those rows before measuring"
            )
