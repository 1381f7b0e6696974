"""Structured pruning: remove whole channels of every prunable layer group (dependency-aware, via
Torch-Pruning), so the layers get smaller and dense kernels run faster."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from accelkit._lazy import require
from accelkit.config import Config
from accelkit.errors import ConfigError
from accelkit.techniques._workload_kinds import TRAINABLE_CLASSIFIER, details_of, example_inputs
from accelkit.techniques.prune._common import PruningError, _check_ratio
from accelkit.techniques.prune.finetune import FineTuneConfig, _shuffled_batches, fine_tune
from accelkit.techniques.prune.saving import pruned_shapes
from accelkit.techniques.registry import BuildContext, Built, register_technique

__all__ = ["StructuredPruneConfig", "prune_structured"]


_IMPORTANCES = ("magnitude", "taylor")


@dataclass
class StructuredPruneConfig(Config):
    """Remove ``ratio`` of the channels of every prunable layer group (dependency-aware).

    ``importance``: "magnitude" (L2 of the group's weights) or "taylor" (|w·∂L/∂w|,
    needs training data). ``steps`` > 1 prunes iteratively, fine-tuning between steps.
    ``ignore``: names of layers to keep whole; by default the output layer.
    """

    ratio: float = 0.5
    importance: str = "magnitude"
    steps: int = 1
    ignore: tuple[str, ...] = ()
    round_to: int | None = None
    taylor_batches: int = 4
    finetune: FineTuneConfig = field(default_factory=lambda: FineTuneConfig(epochs=0))
    version: int = 1

    def __post_init__(self) -> None:
        _check_ratio("ratio", self.ratio)
        if self.importance not in _IMPORTANCES:
            raise ConfigError(f"importance={self.importance!r}: expected one of {list(_IMPORTANCES)}")
        if self.steps < 1:
            raise ConfigError(f"steps={self.steps}: expected 1 (one-shot) or more (iterative)")
        if self.round_to is not None and self.round_to < 1:
            raise ConfigError(f"round_to={self.round_to}: expected None or a positive channel multiple")
        if self.taylor_batches < 1:
            raise ConfigError(f"taylor_batches={self.taylor_batches}: expected a positive integer")
        self.ignore = tuple(self.ignore)
        if isinstance(self.finetune, dict):
            self.finetune = FineTuneConfig.from_dict(self.finetune)


def _output_layer_name(model: nn.Module) -> str | None:
    """The last Linear/Conv in definition order: pruning its outputs would change the model's output."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            last = name
    return last


def _resolve_ignored(model: nn.Module, names: tuple[str, ...]) -> list[nn.Module]:
    modules = dict(model.named_modules())
    if not names:
        out = _output_layer_name(model)
        return [modules[out]] if out is not None else []
    missing = [n for n in names if n not in modules]
    if missing:
        raise ConfigError(
            f"ignore={list(names)}: no layer named {missing[0]!r} in the model; "
            f"use names from model.named_modules(), e.g. {list(modules)[1:4]}"
        )
    return [modules[n] for n in names]


def _run(model: nn.Module, example_inputs: Any) -> Any:
    if isinstance(example_inputs, dict):
        return model(**example_inputs)
    if isinstance(example_inputs, (tuple, list)):
        return model(*example_inputs)
    return model(example_inputs)


def _accumulate_taylor_grads(
    model: nn.Module, dataset: torch.utils.data.Dataset, loss_fn: Callable, batches: int, batch_size: int
) -> None:
    model.zero_grad(set_to_none=True)
    model.eval()  # BN statistics frozen: the gradient scores the trained model, not a new one
    loader = _shuffled_batches(dataset, batch_size, torch.Generator().manual_seed(0))
    for i, (inputs, targets) in enumerate(loader):
        if i >= batches:
            break
        loss_fn(model(inputs), targets).backward()


def prune_structured(
    model: nn.Module,
    example_inputs: Any,
    config: StructuredPruneConfig | None = None,
    *,
    dataset: torch.utils.data.Dataset | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    teacher: nn.Module | None = None,
    kd_loss: Callable | None = None,
) -> nn.Module:
    """Physically remove channels from ``model`` (in place) and return it, smaller.

    Torch-Pruning's dependency graph finds every layer coupled to a pruned channel
    (the next conv's inputs, batch norms, the head) so the result is a plain, smaller
    ``nn.Module`` that runs without masks. Between iterative steps (and after the last)
    the model is fine-tuned on ``dataset`` when ``config.finetune.epochs`` > 0.
    """
    config = config or StructuredPruneConfig()
    tp = require("torch_pruning", "compress")
    needs_data = config.importance == "taylor" or config.finetune.epochs > 0
    if needs_data and (dataset is None or loss_fn is None):
        raise ConfigError(
            f"importance={config.importance!r} with finetune.epochs={config.finetune.epochs} needs training data: "
            "pass dataset= and loss_fn= (or use importance='magnitude' and finetune epochs=0)"
        )
    model.eval()
    with torch.no_grad():
        try:
            reference_out = _run(model, example_inputs)
        except Exception as exc:
            raise PruningError(
                f"the model does not run on the example inputs ({type(exc).__name__}: {exc}); "
                "pass inputs of the shape its forward expects"
            ) from exc
    ignored = _resolve_ignored(model, config.ignore)
    importance = (
        tp.importance.GroupMagnitudeImportance(p=2)
        if config.importance == "magnitude"
        else tp.importance.GroupTaylorImportance()
    )
    params_before = sum(p.numel() for p in model.parameters())
    try:
        pruner = tp.pruner.BasePruner(
            model,
            example_inputs,
            importance=importance,
            pruning_ratio=config.ratio,
            iterative_steps=config.steps,
            ignored_layers=ignored,
            round_to=config.round_to,
        )
    except Exception as exc:
        raise PruningError(
            f"Torch-Pruning cannot trace this model ({type(exc).__name__}: {exc}); "
            "make its forward traceable with the example inputs or list the offending layers in ignore="
        ) from exc
    for _step in range(config.steps):
        if config.importance == "taylor":
            _accumulate_taylor_grads(model, dataset, loss_fn, config.taylor_batches, config.finetune.batch_size)
        try:
            pruner.step()
        except Exception as exc:
            raise PruningError(f"pruning step {_step + 1} failed ({type(exc).__name__}: {exc})") from exc
        model.zero_grad(set_to_none=True)
        _check_still_runs(model, example_inputs, reference_out)
        if config.finetune.epochs > 0:
            fine_tune(model, dataset, loss_fn, config.finetune, teacher=teacher, kd_loss=kd_loss)
    params_after = sum(p.numel() for p in model.parameters())
    model.accelkit_details = {
        "technique": "prune-structured",
        "config": config.to_dict(),
        "params_before": params_before,
        "params_after": params_after,
        "channels": {
            n: s.get("out_channels", s.get("out_features"))
            for n, s in pruned_shapes(model).items()
            if s["type"] != "Attention"
        },
    }
    return model.eval()


def _check_still_runs(model: nn.Module, example_inputs: Any, reference_out: Any) -> None:
    # Never hand back a model that fails a forward pass or changed its output shape.
    model.eval()
    with torch.no_grad():
        try:
            out = _run(model, example_inputs)
        except Exception as exc:
            raise PruningError(
                f"the pruned model no longer runs ({type(exc).__name__}: {exc}); "
                "add the layer named in the error to ignore="
            ) from exc
    if isinstance(out, torch.Tensor) and isinstance(reference_out, torch.Tensor) and out.shape != reference_out.shape:
        raise PruningError(
            f"pruning changed the output shape {tuple(reference_out.shape)} → {tuple(out.shape)}; "
            f"add the output layer to ignore= (e.g. {_output_layer_name(model)!r})"
        )


# The settings the registered variant uses; the benchmarks quote them.
PRUNE_50 = StructuredPruneConfig(ratio=0.5, importance="magnitude", steps=2, finetune=FineTuneConfig(epochs=3))


@register_technique(
    "prune-structured-50",
    group="structure",
    description="50% of conv channels physically removed (Torch-Pruning, magnitude, 2 steps) + 3-epoch "
    "fine-tune per step",
    needs=TRAINABLE_CLASSIFIER,
    expensive=True,
    saveable=False,  # shapes the architecture does not describe: saved by prune.saving
)
def _prune_structured_50(model: nn.Module, ctx: BuildContext) -> Built:
    wl = ctx.workload
    model = prune_structured(model.cpu(), example_inputs(wl), PRUNE_50, dataset=wl.train_dataset(),
                             loss_fn=wl.loss_fn)
    return Built(model.to(ctx.settings.device), ctx.settings, details_of(model))

