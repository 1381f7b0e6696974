"""Registers the compression variants (issue 6): structured/unstructured pruning, distillation, depthwise."""

from __future__ import annotations

import copy

from accelkit.techniques.prune import (
    FineTuneConfig,
    StructuredPruneConfig,
    UnstructuredPruneConfig,
    prune_structured,
    prune_unstructured_,
)
from accelkit.variants import register_variant
from accelkit.workloads.base import RunSettings, TensorWorkload

# The settings each expensive variant uses; the benchmarks quote them.
PRUNE_50 = StructuredPruneConfig(ratio=0.5, importance="magnitude", steps=2, finetune=FineTuneConfig(epochs=3))
UNSTRUCTURED_50 = UnstructuredPruneConfig(amount=0.5)


def _trainable_tensor_workload(workload) -> bool:
    # an image-style workload with labelled training data (digits, a user's TensorWorkload with train_dataset)
    return isinstance(workload, TensorWorkload) and hasattr(workload, "train_dataset") and hasattr(workload, "loss_fn")


def _example_inputs(workload):
    return workload.example_inputs(workload.calib_data(limit=2), RunSettings(batch_size=2))


@register_variant(
    "prune-structured-50",
    description="50% of conv channels physically removed (Torch-Pruning, magnitude, 2 steps) + 3-epoch fine-tune per step",
    applies_to=_trainable_tensor_workload,
    expensive=True,
)
def _prune_structured_50(model, settings, workload):
    model = prune_structured(
        model.cpu(),
        _example_inputs(workload),
        PRUNE_50,
        dataset=workload.train_dataset(),
        loss_fn=workload.loss_fn,
    )
    return model.to(settings.device), settings


@register_variant(
    "prune-unstructured-50",
    description="50% of Linear/Conv weights zeroed (global magnitude): smaller zipped, NOT faster on dense kernels",
)
def _prune_unstructured_50(model, settings, workload):
    prune_unstructured_(model, copy.deepcopy(UNSTRUCTURED_50))
    return model, settings
