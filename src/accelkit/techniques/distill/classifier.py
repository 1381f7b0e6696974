"""Distilling a classifier: the teacher's logits computed once, a student trained on them with logit
KD (and pixel-shift augmentation for images)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from accelkit.config import Config
from accelkit.errors import ConfigError
from accelkit.techniques.distill._common import _check_positive
from accelkit.techniques.distill.losses import LogitKDConfig, logit_kd_loss

__all__ = ["ClassifierDistillConfig", "distill_classifier", "shift_augment"]


@dataclass
class ClassifierDistillConfig(Config):
    """Logit distillation of a classifier on a labelled dataset, teacher logits computed once."""

    kd: LogitKDConfig = None  # type: ignore[assignment]
    epochs: int = 30
    lr: float = 3e-3
    batch_size: int = 64
    weight_decay: float = 1e-4
    seed: int = 0
    version: int = 1

    def __post_init__(self) -> None:
        if self.kd is None:
            self.kd = LogitKDConfig()
        elif isinstance(self.kd, dict):
            self.kd = LogitKDConfig.from_dict(self.kd)
        if self.epochs < 1:
            raise ConfigError(f"epochs={self.epochs}: expected a positive number of epochs")
        _check_positive("lr", self.lr)
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size}: expected a positive integer")


@torch.no_grad()
def _teacher_outputs(teacher: Callable, inputs: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    if isinstance(teacher, nn.Module):
        teacher.eval()
    return torch.cat([teacher(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)])


def distill_classifier(
    student: nn.Module,
    teacher: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    config: ClassifierDistillConfig | None = None,
    *,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
) -> nn.Module:
    """Train ``student`` on (inputs, targets) to match ``teacher``'s logits (computed once, cached in memory).

    ``augment(x, gen)`` perturbs a batch; with it the teacher runs on each augmented batch
    instead of using the cache (the cached logits belong to the clean inputs).
    """
    config = config or ClassifierDistillConfig()
    cached = None if augment is not None else _teacher_outputs(teacher, inputs)
    with torch.no_grad():
        s_out = student.eval()(inputs[:2])
        t_out = teacher(inputs[:2])
    if s_out.shape != t_out.shape:
        raise ConfigError(
            f"student output {tuple(s_out.shape)} cannot be matched to teacher output {tuple(t_out.shape)}; "
            "the student's head must have the teacher's number of classes"
        )
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    steps_per_epoch = -(-len(inputs) // config.batch_size)
    total = config.epochs * steps_per_epoch
    opt = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=total)
    student.train()
    for _ in range(config.epochs):
        perm = torch.randperm(len(inputs), generator=gen)
        for start in range(0, len(inputs), config.batch_size):
            idx = perm[start : start + config.batch_size]
            xb = inputs[idx]
            if augment is not None:
                xb = augment(xb, gen)
                with torch.no_grad():
                    tb = teacher(xb)
            else:
                tb = cached[idx]
            loss = logit_kd_loss(student(xb), tb, targets[idx], config.kd)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return student.eval()


def shift_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Roll a batch of images by up to one pixel each way (the digits baseline's augmentation)."""
    shifts = tuple(torch.randint(-1, 2, (2,), generator=gen).tolist())
    return torch.roll(x, shifts=shifts, dims=(-2, -1))
