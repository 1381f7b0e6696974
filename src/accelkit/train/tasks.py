"""Training tasks: what ``accelkit train --workload NAME`` trains (model, data, loss, metric).

The embedded digits and gpt-mini workloads train a freshly initialised model from scratch
(seeded); a user's ``package.module:function`` workload must offer ``train_dataset()`` and
``loss_fn`` and is trained from its ``build_model()``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from accelkit.errors import WorkloadImportError

__all__ = ["TrainingTask", "get_training_task"]


@dataclass
class TrainingTask:
    name: str
    model: nn.Module
    dataset: Dataset
    loss_fn: Callable[[Any, Any], torch.Tensor]
    throughput_unit: str  # "samples" or "tokens"
    evaluate: Callable[[nn.Module], dict[str, float]]  # validation metrics of a trained model
    example_batch: tuple[Any, Any]  # a few samples, for the batch-size finder


@torch.no_grad()
def _eval_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    logits = torch.cat([model(x[i : i + 512].to(device)).float().cpu() for i in range(0, len(x), 512)])
    model.train(was_training)
    return {"val_loss": float(nn.functional.cross_entropy(logits, y)), "val_accuracy": float((logits.argmax(1) == y).float().mean())}


@torch.no_grad()
def _eval_lm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn) -> dict[str, float]:
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    losses = [float(loss_fn(model(x[i : i + 16].to(device)).float(), y[i : i + 16].to(device))) * len(x[i : i + 16]) for i in range(0, len(x), 16)]
    model.train(was_training)
    return {"val_loss": sum(losses) / len(x)}


def get_training_task(name: str, *, seed: int = 0, width: int | None = None) -> TrainingTask:
    """The training task for a workload name: ``digits``, ``gpt-mini`` or ``package.module:function``."""
    from accelkit.workloads import get_workload

    workload = get_workload(name)
    torch.manual_seed(seed)  # the fresh model's initialisation
    if name == "digits":
        from accelkit.workloads.digits import DigitsCNN, load_digits_split

        _, _, x_te, y_te = load_digits_split()
        dataset = workload.train_dataset()
        model = DigitsCNN(width or 64)
        return TrainingTask(name, model, dataset, workload.loss_fn, "samples",
                            lambda m: _eval_classifier(m, x_te, y_te), (dataset.tensors[0][:4], dataset.tensors[1][:4]))
    if name == "gpt-mini":
        from accelkit.workloads.gpt_mini import GPTConfig, GPTMini

        cfg = workload.config if width is None else GPTConfig(n_embd=width)
        model = GPTMini(cfg)
        dataset = workload.train_dataset()
        val = workload.eval_data()
        return TrainingTask(name, model, dataset, workload.loss_fn, "tokens",
                            lambda m: _eval_lm(m, val["inputs"], val["targets"], workload.loss_fn),
                            (dataset.tensors[0][:4], dataset.tensors[1][:4]))
    if not (hasattr(workload, "train_dataset") and hasattr(workload, "loss_fn")):
        raise WorkloadImportError(
            f"workload {name!r} has no train_dataset()/loss_fn; give its Workload class a train_dataset() returning "
            "a Dataset of (inputs, targets) and a loss_fn(outputs, targets), or train it with accelkit.train.train()"
        )
    dataset = workload.train_dataset()
    first = dataset[0]
    example = tuple(t.unsqueeze(0) if isinstance(t, torch.Tensor) else t for t in first)

    def evaluate(model: nn.Module) -> dict[str, float]:
        return {}

    return TrainingTask(name, workload.build_model(), dataset, workload.loss_fn,
                        getattr(workload, "train_throughput_unit", "samples"), evaluate, example)
