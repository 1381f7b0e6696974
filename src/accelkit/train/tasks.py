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

from accelkit.errors import ConfigError, WorkloadImportError

__all__ = ["GPT_MINI_SIZES", "TrainingTask", "get_training_task"]

# gpt-mini shapes for training benchmarks (GPTConfig fields). "default" is the workload's own
# (n_embd 128, 4 layers, T 128): too small on CPU, where per-op overhead, layer norms and
# attention outweigh its GEMMs. "large" (n_embd 512, 8 heads of 64, 6 layers, T 128; 19 M
# parameters, ~117 GFLOP per fwd+bwd at batch 8) is GEMM-bound, so bf16 pays off; T stays 128
# because the CPU flash-attention kernel gains nothing from bf16 and grows with T.
GPT_MINI_SIZES: dict[str, dict[str, int]] = {
    "default": {},
    "large": {"n_embd": 512, "n_head": 8, "n_layer": 6, "block_size": 128},
}


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


def get_training_task(name: str, *, seed: int = 0, width: int | None = None, size: str = "default") -> TrainingTask:
    """The training task for a workload name: ``digits``, ``gpt-mini`` or ``package.module:function``.

    ``size`` picks a gpt-mini shape from ``GPT_MINI_SIZES`` (``width`` then overrides n_embd).
    """
    from accelkit.workloads import get_workload

    if size not in GPT_MINI_SIZES:
        raise ConfigError(f"size={size!r}: expected one of {list(GPT_MINI_SIZES)}")
    if size != "default" and name != "gpt-mini":
        raise ConfigError(f"size={size!r} applies to gpt-mini only; drop it for workload {name!r}")
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
        from accelkit.workloads.gpt_mini import GPTConfig, GPTMini, GPTMiniWorkload

        shape = {**GPT_MINI_SIZES[size], **({"n_embd": width} if width is not None else {})}
        cfg = GPTConfig(**shape) if shape else workload.config
        if cfg.block_size != workload.config.block_size:  # training/validation windows of the model's length
            workload = GPTMiniWorkload(eval_windows=workload.eval_windows, config=cfg)
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
