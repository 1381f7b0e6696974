"""Distilling a classifier: the teacher's logits computed once, a student trained on them with logit
KD (and pixel-shift augmentation for images)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from accelkit.config import Config
from accelkit.errors import ConfigError
from accelkit.techniques._workload_kinds import TRAINABLE_CLASSIFIER, details_of, example_inputs
from accelkit.techniques.distill._common import _check_positive
from accelkit.techniques.distill.losses import LogitKDConfig, logit_kd_loss
from accelkit.techniques.registry import BuildContext, Built, register_technique

__all__ = [
    "CLASSIFIER_KD",
    "ClassifierDistillConfig",
    "cached_classifier_student",
    "distil_offered_student",
    "distill_classifier",
    "shift_augment",
    "student_built",
]


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


# logit KD, T=4, alpha=0.7: what the classifier students (distill-small, depthwise, mobilenet-v2) train with
CLASSIFIER_KD = ClassifierDistillConfig(kd=LogitKDConfig(temperature=4.0, alpha=0.7), epochs=30, lr=3e-3)


def cached_classifier_student(workload, name: str, student: nn.Module, teacher: nn.Module, spec: dict,
                              config: ClassifierDistillConfig = CLASSIFIER_KD) -> nn.Module:
    """``student`` distilled from ``teacher`` on the workload's training split, once per (spec,
    config, teacher weights); cached."""
    from safetensors.torch import load_file

    from accelkit.techniques._artifacts import cached_artifact, weights_fingerprint
    from accelkit.workloads._weights import save_state_atomic

    def load(path):
        student.load_state_dict(load_file(str(path)))
        return student.eval()

    def build() -> nn.Module:
        inputs, targets = workload.train_dataset().tensors
        distill_classifier(student, teacher.eval(), inputs, targets, config, augment=shift_augment)
        return student.eval()

    fields = {**spec, "kd": config.to_dict(), "teacher": weights_fingerprint(teacher)}
    return cached_artifact("distill", f"{workload.name}-{name}", fields, build=build, load=load,
                           save=lambda m, p: save_state_atomic(m, p), suffix=".safetensors")


def student_built(model: nn.Module, teacher: nn.Module, ctx: BuildContext, **details) -> Built:
    """The Built record of a distilled student ``model``, with its parameter and FLOP ratios to the
    teacher (``details`` may name the student: ``student="..."``)."""
    from accelkit.measure.model_stats import compare_architectures

    rows = compare_architectures({"teacher": teacher, "student": model}, example_inputs(ctx.workload))
    details = {**details_of(model), **details, "params_ratio": rows["student"]["params_ratio"],
               "flops_ratio": rows["student"]["flops_ratio"]}
    return Built(model.to(ctx.settings.device), ctx.settings, details)


def distil_offered_student(name: str, model: nn.Module, ctx: BuildContext) -> Built:
    """Distil the workload's own ``student:<name>`` architecture from the baseline."""
    torch.manual_seed(0)
    teacher = model.cpu().eval()
    student = ctx.workload.student_architecture(name)
    spec = {"arch": f"student:{name}", "class": type(student).__name__,
            "params": sum(p.numel() for p in student.parameters())}
    student = cached_classifier_student(ctx.workload, name, student, teacher, spec)
    return student_built(student, teacher, ctx, student=f"{type(student).__name__} (the workload's student:{name})")


@register_technique(
    "distill-small",
    group="structure",
    description="the workload's smaller architecture (digits: DigitsCNN(width=16)) distilled from the baseline "
    "(logit KD, T=4, alpha=0.7)",
    needs=(*TRAINABLE_CLASSIFIER, "student:small"),
    expensive=True,
    saveable=False,  # another architecture than the workload's baseline
)
def _distill_small(model: nn.Module, ctx: BuildContext) -> Built:
    return distil_offered_student("small", model, ctx)
