"""2:4 semi-structured sparsity (2 of every 4 weights zero) on Linear layers: faster matmuls on
CUDA GPUs with sparse tensor cores only."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from accelkit.config import Config
from accelkit.errors import ConfigError, DeviceUnavailableError
from accelkit.techniques.prune._common import PruningError

__all__ = ["SemiStructuredConfig", "apply_semi_structured_24_", "mask_2_to_4", "semi_structured_unavailable_reason"]


@dataclass
class SemiStructuredConfig(Config):
    """2:4 sparsity (2 of every 4 weights zero) on Linear layers with both dims multiples of 64."""

    min_features: int = 64
    version: int = 1

    def __post_init__(self) -> None:
        if self.min_features < 1:
            raise ConfigError(f"min_features={self.min_features}: expected a positive integer")


def semi_structured_unavailable_reason() -> str | None:
    """Why 2:4 sparse kernels cannot run here, or None when they can."""
    if not torch.cuda.is_available():
        return "2:4 semi-structured sparsity needs a CUDA GPU with sparse tensor cores (Ampere or newer); none here"
    major, _ = torch.cuda.get_device_capability()
    if major < 8:
        return f"2:4 semi-structured sparsity needs compute capability ≥ 8.0; this GPU has {major}.x"
    return None


def mask_2_to_4(weight: torch.Tensor) -> torch.Tensor:
    """Keep the 2 largest-magnitude weights of every group of 4 along the input dimension."""
    out_f, in_f = weight.shape
    if in_f % 4:
        raise ConfigError(f"2:4 sparsity needs in_features divisible by 4, got weight shape {tuple(weight.shape)}")
    groups = weight.abs().reshape(out_f, in_f // 4, 4)
    keep = groups.topk(2, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    return weight * mask.reshape(out_f, in_f)


def apply_semi_structured_24_(model: nn.Module, config: SemiStructuredConfig | None = None) -> list[str]:
    """Convert eligible Linear weights to torch's 2:4 sparse format in place; returns their names.

    Raises DeviceUnavailableError (with the reason) where no sparse tensor cores exist.
    Run the model in fp16/bf16 on CUDA afterwards.
    """
    config = config or SemiStructuredConfig()
    reason = semi_structured_unavailable_reason()
    if reason is not None:
        raise DeviceUnavailableError(reason + "; use prune_structured for CPU speed-ups")
    from torch.sparse import to_sparse_semi_structured

    converted = []
    for name, m in model.named_modules():
        if (
            isinstance(m, nn.Linear)
            and m.weight.is_cuda
            and m.in_features % config.min_features == 0
            and m.out_features % config.min_features == 0
        ):
            dense = mask_2_to_4(m.weight.detach())
            m.weight = nn.Parameter(to_sparse_semi_structured(dense), requires_grad=False)
            converted.append(name)
    if not converted:
        raise PruningError(
            f"no CUDA Linear layer with in/out features divisible by {config.min_features}: "
            "move the model to CUDA (half precision) first"
        )
    return converted
