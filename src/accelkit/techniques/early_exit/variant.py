"""The ``early-exit`` variant: exit heads trained on the first part of the workload's calibration
data, thresholds calibrated on the rest (never on held-out data) to the user's budget; the
preset is chosen by what the workload offers, and the result is cached by weights, config and data.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from accelkit.techniques._artifacts import cached_artifact, data_fingerprint, weights_fingerprint
from accelkit.techniques._workload_kinds import calib_budget, input_batches, require_preset
from accelkit.techniques.early_exit.calibrate import calibrate_thresholds, collect_exit_outputs
from accelkit.techniques.early_exit.config import BACKBONE_TRAINING, EarlyExitConfig
from accelkit.techniques.early_exit.model import EarlyExitModel, apply_early_exit
from accelkit.techniques.early_exit.saving import load_early_exit, save_early_exit
from accelkit.techniques.early_exit.training import train_exit_heads_
from accelkit.techniques.registry import BuildContext, Built, register_technique
from accelkit.workloads.base import Workload

__all__ = ["EARLY_EXIT_PRESETS", "build_early_exit", "extra_train_data"]

# per kind of workload (what it offers): exit config, quality budget on calibration data, how the
# calib data is split. The budget is the default when the user gives none; with one, the
# calibration budget keeps the same margin under it (``calib_budget``).
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
    fields = {"config": config.to_dict(), "budget": max_quality_drop, "n_calib": n, "n_train": n_train,
              "weights": weights_fingerprint(model), "extra_train": data_fingerprint(extra_train or ())}

    def build() -> EarlyExitModel:
        train_part, calib_part = _split(calib, n_train)
        if extra_train is not None:
            train_part = list(train_part) + list(extra_train)
        train_batches = input_batches(workload, train_part, batch_size)
        calib_batches = input_batches(workload, calib_part, batch_size)
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
        return wrapped

    return cached_artifact("early_exit", workload.name, fields, build=build, use_cache=use_cache,
                           load=lambda folder: load_early_exit(folder, model),
                           save=lambda wrapped, folder: save_early_exit(wrapped, folder))


def _split(data: Any, n_train: int) -> tuple[Any, Any]:
    if isinstance(data, dict):
        return {k: v[:n_train] for k, v in data.items()}, {k: v[n_train:] for k, v in data.items()}
    return data[:n_train], data[n_train:]


@register_technique(
    "early-exit",
    group="structure",
    description="exit heads after each block, thresholds calibrated to the quality budget; "
    "exited rows leave the batch",
    needs=("block-stack",),
    accepts=("eager",),
    produces="dynamic",
    expensive=True,
    saveable=False,  # data-dependent exits: saved by its own save_early_exit
)
def _early_exit(model: nn.Module, ctx: BuildContext) -> Built:
    preset = require_preset(EARLY_EXIT_PRESETS, "early-exit", ctx.workload)
    wrapped = build_early_exit(
        model, ctx.workload, EarlyExitConfig.from_dict(preset["config"].to_dict()),
        max_quality_drop=calib_budget(preset, ctx), train_fraction=preset["train_fraction"],
        batch_size=preset["batch_size"], extra_train=extra_train_data(preset, ctx.workload),
    )
    wrapped.reset_stats()
    return Built(wrapped, ctx.settings, dict(wrapped.accelkit_details))
