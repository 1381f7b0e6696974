"""The kinds of workload the training techniques are tuned for, named by what a workload offers,
and how a preset chosen by kind takes the user's quality budget."""

from __future__ import annotations

from typing import Any

from torch import nn

from accelkit.errors import ConfigError
from accelkit.techniques.registry import BuildContext
from accelkit.workloads.base import RunSettings, Workload

__all__ = [
    "SENTENCE_ENCODER",
    "TRAINABLE_CLASSIFIER",
    "calib_budget",
    "details_of",
    "example_inputs",
    "input_batches",
    "preset_for",
    "require_preset",
]

# classifiers with labelled training data and one input tensor (digits, a user's CNN with train_dataset)
TRAINABLE_CLASSIFIER = ("classifier", "trainable", "tensor-inputs")
# a BERT-style sentence encoder with a tokenizer and unlabelled text to distil on
SENTENCE_ENCODER = ("text", "encoder-blocks", "sentence-embedding", "unlabelled-text")


def preset_for(presets: dict[str, dict[str, Any]], workload: Workload) -> dict[str, Any] | None:
    """The first preset whose kind (a key of ``OFFERS``) the workload offers."""
    offered = workload.offers()
    return next((p for kind, p in presets.items() if kind in offered), None)


def require_preset(presets: dict[str, dict[str, Any]], technique: str, workload: Workload) -> dict[str, Any]:
    preset = preset_for(presets, workload)
    if preset is None:
        raise ConfigError(f"{technique} is set up for workloads offering one of {sorted(presets)}; "
                          f"workload {workload.name!r} offers none of them")
    return preset


def calib_budget(preset: dict[str, Any], ctx: BuildContext) -> float:
    """The budget to calibrate to: the user's less the preset's margin for the calibration →
    held-out gap, or the preset's own when the user gave none."""
    if ctx.max_quality_drop is None:
        return preset["max_quality_drop"]
    return max(0.0, ctx.max_quality_drop - preset.get("margin", 0.0))


def details_of(model: nn.Module) -> dict:
    """What a technique function recorded on the model, moved into the Built record."""
    return dict(model.__dict__.pop("accelkit_details", None) or {})


def input_batches(workload: Workload, data: Any, batch_size: int) -> list[Any]:
    """Model inputs of ``data`` for tuning; dynamic padding, since per-row outputs do not depend on
    it and it is faster to tune on."""
    settings = workload.default_settings(batch_size).with_(padding="dynamic", sort_by_length=False)
    return [inputs for inputs, _ in workload.batches(data, settings)]


def example_inputs(workload: Workload) -> Any:
    """Two calibration items as model inputs (tracing, pruning dependency graphs, FLOP counts)."""
    return workload.example_inputs(workload.calib_data(limit=2), RunSettings(batch_size=2))
