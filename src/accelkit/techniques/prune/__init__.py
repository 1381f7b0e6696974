"""Pruning: structured (channels physically removed, via Torch-Pruning), unstructured, 2:4.

Structured pruning buys real speed on dense kernels because the layers get smaller;
it costs accuracy that a short fine-tune wins back. Unstructured (masked) pruning only
zeros weights: smaller compressed files, no speed-up on dense CPU/GPU kernels.
2:4 semi-structured sparsity speeds matmuls only on CUDA GPUs with sparse tensor cores.

Layout: ``structured``, ``unstructured``, ``semi_structured`` (one method each, with its
config), ``finetune`` (the recovery fine-tune), ``saving`` (save_pruned / load_pruned).
"""

from __future__ import annotations

from accelkit.techniques.prune._common import PruningError
from accelkit.techniques.prune.finetune import FineTuneConfig, fine_tune
from accelkit.techniques.prune.saving import load_pruned, pruned_shapes, save_pruned
from accelkit.techniques.prune.semi_structured import (
    SemiStructuredConfig,
    apply_semi_structured_24_,
    mask_2_to_4,
    semi_structured_unavailable_reason,
)
from accelkit.techniques.prune.structured import StructuredPruneConfig, prune_structured
from accelkit.techniques.prune.unstructured import (
    UnstructuredPruneConfig,
    layer_sparsity,
    prune_unstructured_,
)

__all__ = [
    "FineTuneConfig",
    "PruningError",
    "SemiStructuredConfig",
    "StructuredPruneConfig",
    "UnstructuredPruneConfig",
    "apply_semi_structured_24_",
    "fine_tune",
    "layer_sparsity",
    "mask_2_to_4",
    "load_pruned",
    "prune_structured",
    "prune_unstructured_",
    "pruned_shapes",
    "save_pruned",
    "semi_structured_unavailable_reason",
]
