"""Registers the dynamic-inference variants: ``early-exit`` (classifiers, sentence encoders),
``layer-skip`` and ``routed-depth`` (sentence encoders). Presets are chosen by what the workload
offers, and thresholds are calibrated to the user's budget when one is given.

Exit heads are trained on the first part of the workload's calibration data and the
thresholds calibrated on the rest (never on eval data); both are cached under
``cache_dir()/early_exit`` keyed by config, data and baseline weights.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch
from torch import nn

from accelkit._atomic import atomic_write_bytes
from accelkit.errors import ConfigError
from accelkit.techniques.distill import SentenceDistillConfig, cached_sentence_student
from accelkit.techniques.early_exit import (
    BACKBONE_TRAINING,
    EarlyExitConfig,
    EarlyExitModel,
    apply_early_exit,
    calibrate_thresholds,
    collect_exit_outputs,
    find_blocks,
    load_early_exit,
    save_early_exit,
    train_exit_heads_,
)
from accelkit.techniques.layer_skip import LayerSkipConfig, apply_layer_skip_, select_layers_to_skip
from accelkit.techniques.registry import BuildContext, Built, register_technique
from accelkit.techniques.routed_depth import (
    RoutedDepthConfig,
    RoutedDepthModel,
    apply_routed_depth,
    calibrate_router,
    load_routed_depth,
    save_routed_depth,
)
from accelkit.workloads.base import RunSettings, Workload, cache_dir

__all__ = [
    "EARLY_EXIT_PRESETS",
    "extra_train_data",
    "LAYER_SKIP_PRESETS",
    "ROUTED_DEPTH_PRESETS",
    "ROUTED_STUDENTS",
    "build_early_exit",
    "build_layer_skip",
    "build_routed_depth",
    "router_calibration_data",
    "weights_fingerprint",
]

# per kind of workload (what it offers): exit config, quality budget on calibration data, how the
# calib data is split. The budget is the default when the user gives none; with one, the
# calibration budget keeps the same margin under it (``_calib_budget``).
EARLY_EXIT_PRESETS: dict[str, dict[str, Any]] = {
    "classifier": {
        "config": EarlyExitConfig(criterion="confidence"),
        "max_quality_drop": 0.005,  # agreement with the full model, i.e. ≤ 0.5 points
        "margin": 0.0,
        "train_fraction": 0.67,
        "batch_size": 256,
    },
    "sentence-embedding": {
        # Frozen-backbone ridge heads (cosine 0.66-0.81 to the final embedding on layers 2-5).
        # Tried and measured worse for this target (BENCHMARKS.md): training="joint" (exits
        # 0.78-0.91, full depth drifted to 0.983) and training="staged" (layers 1-4 as a student:
        # exit cosine 0.863; even an oracle choosing the best half of rows reaches only 0.947).
        "config": EarlyExitConfig(criterion="stability", shift_augment=False, lr=3e-3, epochs=300),
        "max_quality_drop": 0.015,  # mean cosine ≥ 0.985 on calibration: margin under 0.98
        "margin": 0.005,
        "train_fraction": 0.6,
        "batch_size": 64,
        "extra_train": None,  # or "stdlib-docstrings": 14.8k more unlabelled training sentences
    },
}


def extra_train_data(preset: dict[str, Any], workload: Workload) -> list[Any] | None:
    """The unlabelled training inputs a preset adds to the calibration split (never evaluation data)."""
    return list(workload.unlabelled_text(preset["extra_train"])) if preset.get("extra_train") else None


def preset_for(presets: dict[str, dict[str, Any]], workload: Workload) -> dict[str, Any] | None:
    """The first preset whose kind (a key of ``OFFERS``) the workload offers."""
    offered = workload.offers()
    return next((p for kind, p in presets.items() if kind in offered), None)


def _calib_budget(preset: dict[str, Any], ctx: BuildContext) -> float:
    # the user's budget less the preset's margin for the calibration → held-out gap
    if ctx.max_quality_drop is None:
        return preset["max_quality_drop"]
    return max(0.0, ctx.max_quality_drop - preset.get("margin", 0.0))


def weights_fingerprint(model: nn.Module) -> str:
    """A short hash of the model's weights, so a cache never serves heads of another model."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        if isinstance(t, torch.Tensor):  # packed int8 params (after another variant) are skipped
            t = t.dequantize() if t.is_quantized else t
            h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _input_batches(workload: Workload, data: Any, batch_size: int) -> list[Any]:
    # dynamic padding: per-row outputs do not depend on padding, and it is faster to tune on
    settings = RunSettings(batch_size=batch_size, padding="dynamic")
    return [inputs for inputs, _ in workload.batches(data, settings)]


def build_early_exit(
    model: nn.Module,
    workload: Workload,
    config: EarlyExitConfig,
    *,
    max_quality_drop: float,
    train_fraction: float = 0.67,
    batch_size: int = 64,
    use_cache: bool = True,
    progress=None,
    extra_train: list[Any] | None = None,
) -> EarlyExitModel:
    """Wrap, train heads on calibration data, calibrate thresholds on held-apart calib data.

    ``extra_train``: more unlabelled training inputs (never evaluation data) added to the
    training part, e.g. stdlib docstring sentences for minilm.
    """
    calib = workload.calib_data()
    n = workload.n_items(calib)
    n_train = int(n * train_fraction)
    key_fields = {"workload": workload.name, "config": config.to_dict(), "budget": max_quality_drop,
                  "n_calib": n, "n_train": n_train, "weights": weights_fingerprint(model)}
    if extra_train:
        key_fields["extra_train"] = hashlib.sha256(repr(list(extra_train)).encode()).hexdigest()[:16]
    key_src = json.dumps(key_fields, sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    folder = cache_dir() / "early_exit" / f"{workload.name}-{key}"
    if use_cache and (folder / "early_exit.json").exists():
        try:
            return load_early_exit(folder, model)
        except Exception:  # a stale or corrupt cache entry: rebuild rather than fail
            pass
    train_part, calib_part = _split(calib, n_train)
    if extra_train is not None:
        train_part = list(train_part) + list(extra_train)
    train_batches = _input_batches(workload, train_part, batch_size)
    calib_batches = _input_batches(workload, calib_part, batch_size)
    wrapped = apply_early_exit(model, config, train_batches[0])
    reference = None
    if config.training in BACKBONE_TRAINING:  # the backbone will move: keep the untouched outputs to score against
        reference = collect_exit_outputs(wrapped, calib_batches)[1]
    train_report = train_exit_heads_(wrapped, train_batches, progress=progress)
    result = calibrate_thresholds(wrapped, calib_batches, max_quality_drop=max_quality_drop, reference=reference)
    wrapped.accelkit_details = {
        "criterion": config.criterion,
        "exit_after": wrapped.exit_after,
        "thresholds": result.thresholds,
        "calibration": {k: v for k, v in result.to_dict().items() if k not in ("curve", "costs")},
        "costs": result.costs,
        "tradeoff_curve": result.curve,
        "train": train_report,
        "calib_items": n - n_train,
        "train_items": n_train + len(extra_train or ()),
    }
    if use_cache:
        save_early_exit(wrapped, folder)
    return wrapped


def _split(data: Any, n_train: int) -> tuple[Any, Any]:
    if isinstance(data, dict):
        return {k: v[:n_train] for k, v in data.items()}, {k: v[n_train:] for k, v in data.items()}
    return data[:n_train], data[n_train:]


def _preset(presets: dict[str, dict[str, Any]], name: str, workload: Workload) -> dict[str, Any]:
    preset = preset_for(presets, workload)
    if preset is None:
        raise ConfigError(f"{name} has no preset for workload {workload.name!r}: it offers none of {sorted(presets)}")
    return preset


@register_technique(
    "early-exit",
    group="structure",
    description="exit heads after each block, thresholds calibrated to the quality budget; "
    "exited rows leave the batch",
    needs=("block-stack",),
    accepts=("eager",),
    produces="dynamic",
    expensive=True,
)
def _early_exit(model: nn.Module, ctx: BuildContext) -> Built:
    preset = _preset(EARLY_EXIT_PRESETS, "early-exit", ctx.workload)
    wrapped = build_early_exit(
        model, ctx.workload, EarlyExitConfig.from_dict(preset["config"].to_dict()),
        max_quality_drop=_calib_budget(preset, ctx), train_fraction=preset["train_fraction"],
        batch_size=preset["batch_size"], extra_train=extra_train_data(preset, ctx.workload),
    )
    wrapped.reset_stats()
    return Built(wrapped, ctx.settings, dict(wrapped.accelkit_details))


LAYER_SKIP_PRESETS: dict[str, dict[str, Any]] = {
    # mean cosine ≥ 0.985 on calibration data: a margin under the 0.98 target on eval data
    "sentence-embedding": {"config": LayerSkipConfig(max_quality_drop=0.015), "max_quality_drop": 0.015,
                           "margin": 0.005, "calib_items": 512, "batch_size": 64},
}


def build_layer_skip(
    model: nn.Module, workload: Workload, config: LayerSkipConfig, *, calib_items: int = 512,
    batch_size: int = 64, use_cache: bool = True,
) -> tuple[nn.Module, dict[str, Any]]:
    """Choose the blocks to skip on calibration data (cached), skip them in place."""
    key_src = json.dumps(
        {"workload": workload.name, "config": config.to_dict(), "calib_items": calib_items,
         "weights": weights_fingerprint(model)},
        sort_keys=True,
    )
    path = cache_dir() / "early_exit" / f"layer-skip-{workload.name}-{hashlib.sha256(key_src.encode()).hexdigest()[:16]}.json"
    details: dict[str, Any] | None = None
    if use_cache and path.exists():
        try:
            details = json.loads(path.read_text())
        except ValueError:
            details = None
    if details is None:
        batches = _input_batches(workload, workload.calib_data(calib_items), batch_size)
        if config.skip is not None:
            skip, result = list(config.skip), None
        else:
            result = select_layers_to_skip(model, batches, config)
            skip = result.skip
        n_blocks = len(find_blocks(model, config.block_names))
        details = {
            "skipped_layers": skip,
            "kept_layers": [i for i in range(n_blocks) if i not in skip],
            "layers_saved": len(skip) / n_blocks,
            "calib_items": calib_items,
            **({"calib_quality": result.quality, "sensitivity": result.sensitivity, "tradeoff_curve": result.curve}
               if result else {}),
        }
        if use_cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, json.dumps(details, indent=1).encode())
    apply_layer_skip_(model, details["skipped_layers"], config.block_names)
    return model, details


@register_technique(
    "layer-skip",
    group="structure",
    description="static depth reduction: the least sensitive encoder layers skipped for the "
    "quality budget (the baseline early exit is compared to)",
    needs=("sentence-embedding", "encoder-blocks"),
    expensive=True,
)
def _layer_skip(model: nn.Module, ctx: BuildContext) -> Built:
    preset = _preset(LAYER_SKIP_PRESETS, "layer-skip", ctx.workload)
    config = LayerSkipConfig.from_dict({**preset["config"].to_dict(), "max_quality_drop": _calib_budget(preset, ctx)})
    model, details = build_layer_skip(
        model, ctx.workload, config, calib_items=preset["calib_items"], batch_size=preset["batch_size"],
    )
    return Built(model, ctx.settings, details)


# ---------------------------------------------------------------- routed depth (minilm)

# Shallow paths for the router: layer-subset students distilled on the first 1,000 calibration
# sentences + stdlib docstring sentences, so the remaining calibration sentences are unseen by
# every path and the thresholds are chosen on honest per-row quality. Layer sets: the best 3-,
# 4- and 5-subsets by rank_layer_subsets (untrained cosine 0.70, 0.84, 0.93). The router is
# fitted on package docstring sentences no student saw (on the 589 calibration rows alone its
# rank correlation with the true quality was 0.35; on 4,000 docstring rows 0.47).
_ROUTED_BASE = tuple(
    SentenceDistillConfig(keep_layers=keep, epochs=6, lr=2e-4, token_weight=1.0,
                          extra_sentences="stdlib-docstrings", dropout=False, train_sentences=1000)
    for keep in ((0, 4, 5), (0, 2, 4, 5), (0, 1, 3, 4, 5))
)


def _continued(base: SentenceDistillConfig) -> SentenceDistillConfig:
    # one more pass with 30,000 package docstring sentences added (none of the router's)
    return SentenceDistillConfig(keep_layers=base.keep_layers, epochs=1, lr=1e-4, token_weight=1.0,
                                 extra_sentences="stdlib-docstrings+package-docstrings-train", dropout=False,
                                 train_sentences=1000, init_from=base.to_dict())


ROUTED_STUDENTS = (_ROUTED_BASE[0], _continued(_ROUTED_BASE[1]), _continued(_ROUTED_BASE[2]))
ROUTED_DEPTH_PRESETS: dict[str, dict[str, Any]] = {
    "sentence-embedding": {
        "students": ROUTED_STUDENTS,
        # mean cosine ≥ 0.98 on the held-out calibration sentences less two standard errors and
        # less the optimism of choosing thresholds on them (5-fold), instead of a fixed margin.
        # Two standard errors alone: calibration 0.9811, evaluation 0.9797 (BENCHMARKS.md)
        "config": RoutedDepthConfig(max_quality_drop=0.02, margin_sigmas=2.0, validate_folds=5),
        "router_sentences": ("package-docstrings-heldout", 8000),
        "batch_size": 64,
    },
}


def router_calibration_data(workload: Workload, students: tuple[SentenceDistillConfig, ...]) -> list[str]:
    """The calibration sentences no student trained on: those after the largest ``train_sentences``."""
    counts = [s.train_sentences for s in students]
    if None in counts:
        raise ConfigError("a routed student trains on every calibration sentence (train_sentences=None): "
                          "set train_sentences so some are left to fit the router on")
    rest = workload.calib_data()[max(counts):]  # type: ignore[type-var]
    if not rest:
        raise ConfigError(f"train_sentences={max(counts)} uses all calibration sentences: lower it")
    return rest


def build_routed_depth(
    model: nn.Module,
    workload: Workload,
    students: tuple[SentenceDistillConfig, ...],
    config: RoutedDepthConfig,
    *,
    router_sentences: tuple[str, int] | None = None,
    batch_size: int = 64,
    use_cache: bool = True,
    progress=None,
) -> RoutedDepthModel:
    """Distil (or load cached) shallow students, fit the router (on ``router_sentences``: a
    named extra text and how many of its sentences, else cross-fitted), and choose thresholds
    on the calibration sentences none of the students trained on. Cached under
    ``cache_dir()/routed_depth``."""
    router_data = list(workload.unlabelled_text(router_sentences[0])[: router_sentences[1]]) if router_sentences else None
    key_src = json.dumps({"workload": workload.name, "students": [s.cache_key() for s in students],
                          "config": config.to_dict(), "weights": weights_fingerprint(model),
                          "router_data": hashlib.sha256(repr(router_data).encode()).hexdigest()[:16]}, sort_keys=True)
    folder = cache_dir() / "routed_depth" / f"{workload.name}-{hashlib.sha256(key_src.encode()).hexdigest()[:16]}"
    if use_cache and (folder / "routed_depth.json").exists():
        try:
            return load_routed_depth(folder, model)
        except Exception:  # stale or corrupt cache entry: fit again
            pass
    paths = [cached_sentence_student(workload, model, s) for s in students]
    routed = apply_routed_depth(model, paths)
    data = router_calibration_data(workload, students)
    result = calibrate_router(
        routed, _input_batches(workload, data, batch_size), config, progress=progress,
        router_batches=_input_batches(workload, router_data, batch_size) if router_data else None,
    )
    routed.accelkit_details = {
        "paths": [{"name": n, "layers": d} for n, d in zip(routed.names, routed.depths, strict=True)],
        "students": [s.to_dict() for s in students],
        "calibration": {k: v for k, v in result.to_dict().items() if k != "curve"},
        "tradeoff_curve": result.curve,
        "calib_items": len(data),
        "router_items": len(router_data) if router_data else len(data),
    }
    if use_cache:
        save_routed_depth(routed, folder)
    return routed


@register_technique(
    "routed-depth",
    group="structure",
    description="a router reading only the token embeddings sends each sentence to a distilled 3-, 4- or "
    "5-layer student or the full model, thresholds calibrated to the quality budget",
    needs=("text", "sentence-embedding", "encoder-blocks", "unlabelled-text"),
    produces="dynamic",
    expensive=True,
)
def _routed_depth(model: nn.Module, ctx: BuildContext) -> Built:
    preset = _preset(ROUTED_DEPTH_PRESETS, "routed-depth", ctx.workload)
    config = preset["config"].to_dict()
    if ctx.max_quality_drop is not None:  # its own confidence margin (margin_sigmas) stands in for a fixed one
        config["max_quality_drop"] = ctx.max_quality_drop
    routed = build_routed_depth(model, ctx.workload, preset["students"], RoutedDepthConfig.from_dict(config),
                                router_sentences=preset.get("router_sentences"), batch_size=preset["batch_size"])
    routed.reset_stats()
    return Built(routed, ctx.settings, dict(routed.accelkit_details))
