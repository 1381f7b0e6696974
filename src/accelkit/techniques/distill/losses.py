"""Distillation losses: Hinton's logit KD (soft targets at a temperature plus hard labels) and
matching hidden states or embeddings (MSE or cosine, through a learned projection when widths differ)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from accelkit.config import Config
from accelkit.errors import ConfigError
from accelkit.techniques.distill._common import _check_positive

__all__ = ["HiddenDistillConfig", "HiddenDistillLoss", "LogitKDConfig", "logit_kd_loss"]


_HIDDEN_LOSSES = ("mse", "cosine")


@dataclass
class LogitKDConfig(Config):
    """Hinton KD: ``alpha`` · T² · KL(teacher_T ‖ student_T) + (1 − alpha) · CE(student, labels)."""

    temperature: float = 4.0
    alpha: float = 0.9
    version: int = 1

    def __post_init__(self) -> None:
        _check_positive("temperature", self.temperature)
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha={self.alpha!r}: expected a weight in [0, 1] (1 = soft targets only)")


def logit_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor | None = None,
    config: LogitKDConfig | None = None,
) -> torch.Tensor:
    """Distillation loss on logits (B, C); ``targets`` (B,) needed when alpha < 1.

    The T² factor keeps soft-target gradients the same size as the hard loss's across T.
    """
    config = config or LogitKDConfig()
    if student_logits.shape != teacher_logits.shape:
        raise ConfigError(
            f"student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} "
            "differ in shape; both models must predict the same classes"
        )
    t = config.temperature
    soft = nn.functional.kl_div(
        nn.functional.log_softmax(student_logits / t, dim=-1),
        nn.functional.log_softmax(teacher_logits.detach() / t, dim=-1),
        reduction="batchmean",
        log_target=True,
    ) * (t * t)
    if config.alpha >= 1.0:
        return soft
    if targets is None:
        raise ConfigError(f"alpha={config.alpha} mixes in the hard-label loss: pass targets, or use alpha=1.0")
    hard = nn.functional.cross_entropy(student_logits, targets)
    return config.alpha * soft + (1.0 - config.alpha) * hard


@dataclass
class HiddenDistillConfig(Config):
    """Match hidden states/embeddings: ``loss`` "mse" or "cosine" (1 − cos, mean over vectors)."""

    loss: str = "cosine"
    version: int = 1

    def __post_init__(self) -> None:
        if self.loss not in _HIDDEN_LOSSES:
            raise ConfigError(f"loss={self.loss!r}: expected one of {list(_HIDDEN_LOSSES)}")


class HiddenDistillLoss(nn.Module):
    """Loss between student (…, d_s) and teacher (…, d_t) states; a learned Linear maps d_s → d_t when they differ.

    Train the projection together with the student (include this module's parameters).
    """

    def __init__(self, student_dim: int, teacher_dim: int, config: HiddenDistillConfig | None = None) -> None:
        super().__init__()
        if student_dim < 1 or teacher_dim < 1:
            raise ConfigError(f"student_dim={student_dim}, teacher_dim={teacher_dim}: expected positive widths")
        self.config = config or HiddenDistillConfig()
        self.student_dim, self.teacher_dim = student_dim, teacher_dim
        self.projection: nn.Module = (
            nn.Identity() if student_dim == teacher_dim else nn.Linear(student_dim, teacher_dim, bias=False)
        )

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if student.shape[-1] != self.student_dim or teacher.shape[-1] != self.teacher_dim:
            raise ConfigError(
                f"hidden widths student {student.shape[-1]} / teacher {teacher.shape[-1]} do not match this loss "
                f"(built for {self.student_dim} → {self.teacher_dim}); build it with the layers' real widths"
            )
        if student.shape[:-1] != teacher.shape[:-1]:
            raise ConfigError(
                f"student states {tuple(student.shape)} and teacher states {tuple(teacher.shape)} differ before the "
                "last (width) dimension; match the same tokens/positions of the same batch"
            )
        projected = self.projection(student)
        teacher = teacher.detach()
        if self.config.loss == "mse":
            return nn.functional.mse_loss(projected, teacher)
        return (1.0 - nn.functional.cosine_similarity(projected, teacher, dim=-1)).mean()
