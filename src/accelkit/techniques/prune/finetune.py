"""A short supervised fine-tune after pruning (or to recover any compressed model): shuffled
batches, AdamW with a cosine schedule, the model left in eval mode."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from accelkit.config import Config
from accelkit.errors import ConfigError

__all__ = ["FineTuneConfig", "fine_tune"]


@dataclass
class FineTuneConfig(Config):
    """A short supervised fine-tune after pruning (or to recover any compressed model)."""

    epochs: int = 5
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 1e-4
    seed: int = 0
    version: int = 1

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ConfigError(f"epochs={self.epochs}: expected 0 (no fine-tune) or more")
        if not self.lr > 0:
            raise ConfigError(f"lr={self.lr}: expected a positive learning rate, e.g. 1e-3")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size}: expected a positive integer")


class _shuffled_batches:
    """Shuffled (inputs, targets) batches; slices tensors directly for a TensorDataset (no per-item collate)."""

    def __init__(self, dataset: torch.utils.data.Dataset, batch_size: int, gen: torch.Generator) -> None:
        self.dataset, self.batch_size, self.gen = dataset, batch_size, gen

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self):
        if isinstance(self.dataset, torch.utils.data.TensorDataset):
            perm = torch.randperm(len(self.dataset), generator=self.gen)
            for start in range(0, len(perm), self.batch_size):
                idx = perm[start : start + self.batch_size]
                yield tuple(t[idx] for t in self.dataset.tensors)
        else:
            yield from torch.utils.data.DataLoader(
                self.dataset, batch_size=self.batch_size, shuffle=True, generator=self.gen
            )


def fine_tune(
    model: nn.Module,
    dataset: torch.utils.data.Dataset,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    config: FineTuneConfig | None = None,
    *,
    teacher: nn.Module | None = None,
    kd_loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> nn.Module:
    """Train ``model`` on ``dataset`` ((input, target) pairs) with AdamW + cosine decay.

    With ``teacher`` and ``kd_loss(student_out, teacher_out, target)`` the loss is
    distillation from the teacher instead of ``loss_fn``. Returns the model in eval mode.
    """
    config = config or FineTuneConfig()
    if config.epochs == 0:
        return model.eval()
    gen = torch.Generator().manual_seed(config.seed)
    loader = _shuffled_batches(dataset, config.batch_size, gen)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    total = config.epochs * len(loader)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))
    if teacher is not None:
        teacher.eval()
    model.train()
    for _ in range(config.epochs):
        for inputs, targets in loader:
            out = model(inputs)
            if teacher is not None and kd_loss is not None:
                with torch.no_grad():
                    t_out = teacher(inputs)
                loss = kd_loss(out, t_out, targets)
            else:
                loss = loss_fn(out, targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()
