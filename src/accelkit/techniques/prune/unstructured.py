"""Unstructured pruning: zero the smallest-magnitude weights (global L1). Smaller compressed files,
no speed-up on dense kernels."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from accelkit.config import Config
from accelkit.errors import ConfigError
from accelkit.techniques._workload_kinds import details_of
from accelkit.techniques.prune._common import PruningError, _check_ratio
from accelkit.techniques.registry import BuildContext, Built, register_technique

__all__ = ["UnstructuredPruneConfig", "layer_sparsity", "prune_unstructured_"]


@dataclass
class UnstructuredPruneConfig(Config):
    """Zero the ``amount`` smallest-magnitude weights across all Linear/Conv layers (global L1)."""

    amount: float = 0.5
    layer_types: tuple[str, ...] = ("Linear", "Conv1d", "Conv2d", "Conv3d")
    version: int = 1

    def __post_init__(self) -> None:
        _check_ratio("amount", self.amount)
        known = {"Linear", "Conv1d", "Conv2d", "Conv3d"}
        bad = [t for t in self.layer_types if t not in known]
        if bad or not self.layer_types:
            raise ConfigError(f"layer_types={list(self.layer_types)}: expected a non-empty subset of {sorted(known)}")
        self.layer_types = tuple(self.layer_types)


def layer_sparsity(model: nn.Module, layer_types: tuple[str, ...] = ("Linear", "Conv1d", "Conv2d", "Conv3d")) -> dict[str, float]:
    """Fraction of exactly-zero weights per layer."""
    return {
        name: float((m.weight == 0).float().mean())
        for name, m in model.named_modules()
        if type(m).__name__ in layer_types and isinstance(getattr(m, "weight", None), torch.Tensor)
    }


_DENSE_NOTE = (
    "unstructured sparsity leaves every weight tensor dense-shaped: dense CPU/GPU kernels do the same work, "
    "so expect no speed-up; it only shrinks compressed (zipped / sparse-format) size"
)


def prune_unstructured_(model: nn.Module, config: UnstructuredPruneConfig | None = None) -> dict[str, Any]:
    """Global magnitude pruning made permanent (masks folded into the weights), in place.

    Returns a report: overall and per-layer sparsity, and the note that it does not speed up dense kernels.
    """
    import torch.nn.utils.prune as tprune

    config = config or UnstructuredPruneConfig()
    targets = [
        (m, "weight")
        for _, m in model.named_modules()
        if type(m).__name__ in config.layer_types and isinstance(getattr(m, "weight", None), nn.Parameter)
    ]
    if not targets:
        raise PruningError(f"the model has no {list(config.layer_types)} layers to prune; check layer_types")
    tprune.global_unstructured(targets, pruning_method=tprune.L1Unstructured, amount=config.amount)
    for module, attr in targets:
        tprune.remove(module, attr)  # permanent: plain weight tensor, no mask or forward hook left
    per_layer = layer_sparsity(model, config.layer_types)
    total = sum(m.weight.numel() for m, _ in targets)
    zeros = sum(int((m.weight == 0).sum()) for m, _ in targets)
    report = {
        "technique": "prune-unstructured",
        "config": config.to_dict(),
        "sparsity": zeros / total,
        "layer_sparsity": per_layer,
        "note": _DENSE_NOTE,
    }
    model.accelkit_details = report
    return report


UNSTRUCTURED_50 = UnstructuredPruneConfig(amount=0.5)


# zeros make nothing faster on dense kernels: a candidate for the size objective only
@register_technique(
    "prune-unstructured-50",
    group="structure",
    description="50% of Linear/Conv weights zeroed (global magnitude): smaller zipped, NOT faster on dense kernels",
    objectives=("size",),
)
def _prune_unstructured_50(model: nn.Module, ctx: BuildContext) -> Built:
    prune_unstructured_(model, copy.deepcopy(UNSTRUCTURED_50))
    return Built(model, ctx.settings, details_of(model))

