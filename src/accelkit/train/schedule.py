"""Learning-rate schedule: linear warm-up then cosine decay, as a pure function of the step.

Buys: stable early steps at large effective batch sizes. Costs: two numbers to tune.
Being a function of the step, the schedule needs no state of its own in a checkpoint.
"""

from __future__ import annotations

import math

__all__ = ["lr_at_step", "warmup_cosine_factor"]


def lr_at_step(step: int, *, peak_lr: float, total_steps: int, warmup_steps: int, min_lr_ratio: float = 0.0) -> float:
    """LR for optimizer step ``step`` (0-based): warm-up from peak/warmup to peak, then cosine
    from peak down to ``min_lr_ratio * peak`` at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    floor = min_lr_ratio * peak_lr
    return floor + (peak_lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine_factor(step: int, total_steps: int) -> float:
    """LR multiplier for the short distillation fits (students, exit heads): a linear warm-up
    over the first tenth of the steps multiplied by a cosine over all of them. Unlike
    :func:`lr_at_step` the cosine starts at step 0, so the peak is slightly below 1; kept as
    it was so cached students stay reproducible."""
    warmup = max(1, total_steps // 10)
    return min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
