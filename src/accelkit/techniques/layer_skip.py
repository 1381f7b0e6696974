"""Layer skipping (static depth reduction): drop the blocks whose removal changes the output least.

Buys: fewer blocks for every input, with no data-dependent control flow — the simple
baseline that early exit is compared to. Costs: a fixed quality loss for every input, and
calibration passes to rank the layers (greedy: n + (n-1) + … evaluations at most).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from accelkit.config import Config
from accelkit.errors import ConfigError
from accelkit.tasks.pooling import mean_pool
from accelkit.techniques._blocks import _call, _first, find_blocks
from accelkit.techniques._workload_kinds import calib_budget, require_preset
from accelkit.techniques.registry import BuildContext, Built, register_technique
from accelkit.workloads.base import Workload

__all__ = [
    "LayerSkipConfig",
    "LayerSkipResult",
    "SkippedBlock",
    "apply_layer_skip_",
    "layer_sensitivity",
    "select_layers_to_skip",
]


@dataclass
class LayerSkipConfig(Config):
    """Which blocks to skip: ``skip`` explicitly, or chosen greedily for ``max_quality_drop``.

    Quality is measured against the full model's outputs on calibration data: mean cosine
    of (mask-pooled) outputs for embedding models, prediction agreement for classifiers;
    ``max_quality_drop`` bounds 1 - that (0.02 = mean cosine ≥ 0.98).
    """

    max_quality_drop: float = 0.02
    skip: list[int] | None = None
    keep: list[int] = field(default_factory=list)  # never skipped (e.g. the first block)
    max_skipped: int | None = None
    block_names: list[str] | None = None
    version: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.max_quality_drop <= 1:
            raise ConfigError(f"max_quality_drop={self.max_quality_drop}: expected 0..1 (e.g. 0.02 for cosine ≥ 0.98)")
        if self.skip is not None and any(i < 0 for i in self.skip):
            raise ConfigError(f"skip={self.skip}: expected block indices ≥ 0")
        if self.max_skipped is not None and self.max_skipped < 0:
            raise ConfigError(f"max_skipped={self.max_skipped}: expected ≥ 0 or None")


class SkippedBlock(nn.Module):
    """Stands in for a skipped block: returns its first input (the hidden state) unchanged."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.skipped = name

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return x

    def extra_repr(self) -> str:
        return f"skipped={self.skipped!r}"


def apply_layer_skip_(model: nn.Module, skip: Sequence[int], block_names: Sequence[str] | None = None) -> nn.Module:
    """Replace the blocks at indices ``skip`` by pass-throughs, in place; returns ``model``."""
    names = find_blocks(model, block_names)
    bad = [i for i in skip if not 0 <= i < len(names)]
    if bad:
        raise ConfigError(f"skip={list(skip)}: indices {bad} are outside the {len(names)} blocks 0..{len(names) - 1}")
    if len(set(skip)) >= len(names):
        raise ConfigError(f"skip={list(skip)} would skip every block; keep at least one")
    for i in skip:
        parent_name, _, child = names[i].rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, SkippedBlock(names[i]))
    return model


def _outputs(model: nn.Module, batches: Sequence[Any]) -> torch.Tensor:
    """Per-row outputs: mask-pooled hidden states for encoders, logits otherwise."""
    outs = []
    with torch.inference_mode():
        for inputs in batches:
            out = _first(_call(model, inputs))
            mask = inputs.get("attention_mask") if isinstance(inputs, dict) else None
            if out.dim() == 3 and mask is not None:
                out = mean_pool(out, mask)
            outs.append(out.float())
    return torch.cat(outs)


def _quality(out: torch.Tensor, ref: torch.Tensor, classifier: bool) -> float:
    if classifier:
        return float((out.argmax(-1) == ref.argmax(-1)).float().mean())
    return float(nn.functional.cosine_similarity(out.flatten(1), ref.flatten(1), dim=1).mean())


@contextlib.contextmanager
def _blocks_skipped(model: nn.Module, names: list[str], skip: list[int]) -> Iterator[nn.Module]:
    """Temporarily pass the ``skip`` blocks through; the originals are put back after."""
    saved = [(i, model.get_submodule(names[i])) for i in skip]
    apply_layer_skip_(model, skip, names)
    try:
        yield model
    finally:
        for i, block in saved:
            parent_name, _, child = names[i].rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, block)


@dataclass
class LayerSkipResult:
    skip: list[int]
    quality: float
    met_budget: bool
    layers_saved: float
    sensitivity: list[dict[str, float]]
    curve: list[dict[str, Any]]

    def to_dict(self) -> dict:
        return asdict(self)


def layer_sensitivity(
    model: nn.Module, batches: Iterable[Any], block_names: Sequence[str] | None = None, *, classifier: bool = False
) -> list[dict[str, float]]:
    """Quality when each block alone is skipped (higher = the block matters less)."""
    result = select_layers_to_skip(
        model, batches, LayerSkipConfig(max_quality_drop=0.0, max_skipped=0, block_names=list(block_names or []) or None),
        classifier=classifier,
    )
    return result.sensitivity


def select_layers_to_skip(
    model: nn.Module, batches: Iterable[Any], config: LayerSkipConfig, *, classifier: bool = False
) -> LayerSkipResult:
    """Greedy: skip, one at a time, the block whose removal keeps quality highest, while within budget.

    ``model`` is left as it was (each trial swaps blocks out and back). ``classifier``: quality
    is prediction agreement instead of cosine.
    """
    batches = list(batches)
    names = find_blocks(model, config.block_names)
    reference = _outputs(model, batches)

    def quality_without(skip: list[int]) -> float:
        with _blocks_skipped(model, names, skip):
            return _quality(_outputs(model, batches), reference, classifier)

    skipped: list[int] = []
    curve: list[dict[str, Any]] = [{"skipped": [], "quality": 1.0, "layers_saved": 0.0}]
    sensitivity: list[dict[str, float]] = []
    limit = len(names) - 1 if config.max_skipped is None else min(config.max_skipped, len(names) - 1)
    candidates = [i for i in range(len(names)) if i not in config.keep]
    first = True
    while True:
        options = [i for i in candidates if i not in skipped]
        if not options or (len(skipped) >= limit and not first):
            break
        trials = {i: quality_without([*skipped, i]) for i in options}
        if first:
            sensitivity = [{"block": i, "name": names[i], "quality_without": q} for i, q in sorted(trials.items())]
            first = False
            if limit == 0:
                break
        best = max(trials, key=trials.get)
        if 1 - trials[best] > config.max_quality_drop + 1e-12:
            break
        skipped.append(best)
        curve.append({"skipped": sorted(skipped), "quality": trials[best], "layers_saved": len(skipped) / len(names)})
    final_quality = curve[-1]["quality"]
    return LayerSkipResult(
        sorted(skipped), final_quality, bool(skipped), len(skipped) / len(names), sensitivity, curve
    )


# mean cosine ≥ 0.985 on calibration data: a margin under the 0.98 target on eval data
LAYER_SKIP_PRESETS: dict[str, dict[str, Any]] = {
    "sentence-embedding": {"config": LayerSkipConfig(max_quality_drop=0.015), "max_quality_drop": 0.015,
                           "margin": 0.005, "calib_items": 512, "batch_size": 64},
}


def build_layer_skip(
    model: nn.Module, workload: Workload, config: LayerSkipConfig, *, calib_items: int = 512,
    batch_size: int = 64, use_cache: bool = True,
) -> tuple[nn.Module, dict[str, Any]]:
    """Choose the blocks to skip on calibration data (cached), skip them in place."""
    import json

    from accelkit._atomic import atomic_write_bytes
    from accelkit.techniques._artifacts import cached_artifact, weights_fingerprint
    from accelkit.techniques._workload_kinds import input_batches

    def build() -> dict[str, Any]:
        batches = input_batches(workload, workload.calib_data(calib_items), batch_size)
        if config.skip is not None:
            skip, result = list(config.skip), None
        else:
            result = select_layers_to_skip(model, batches, config)
            skip = result.skip
        n_blocks = len(find_blocks(model, config.block_names))
        return {
            "skipped_layers": skip,
            "kept_layers": [i for i in range(n_blocks) if i not in skip],
            "layers_saved": len(skip) / n_blocks,
            "calib_items": calib_items,
            **({"calib_quality": result.quality, "sensitivity": result.sensitivity, "tradeoff_curve": result.curve}
               if result else {}),
        }

    fields = {"config": config.to_dict(), "calib_items": calib_items, "weights": weights_fingerprint(model)}
    details = cached_artifact("early_exit", f"layer-skip-{workload.name}", fields, build=build, use_cache=use_cache,
                              load=lambda p: json.loads(p.read_text()),
                              save=lambda d, p: atomic_write_bytes(p, json.dumps(d, indent=1).encode()),
                              suffix=".json")
    apply_layer_skip_(model, details["skipped_layers"], config.block_names)
    return model, details


@register_technique(
    "layer-skip",
    group="structure",
    description="static depth reduction: the least sensitive encoder layers skipped for the "
    "quality budget (the baseline early exit is compared to)",
    needs=("sentence-embedding", "encoder-blocks"),
    expensive=True,
    saveable=False,  # its SkippedBlock is no layer the saved format records
)
def _layer_skip(model: nn.Module, ctx: BuildContext) -> Built:
    preset = require_preset(LAYER_SKIP_PRESETS, "layer-skip", ctx.workload)
    config = LayerSkipConfig.from_dict({**preset["config"].to_dict(), "max_quality_drop": calib_budget(preset, ctx)})
    model, details = build_layer_skip(
        model, ctx.workload, config, calib_items=preset["calib_items"], batch_size=preset["batch_size"],
    )
    return Built(model, ctx.settings, details)
