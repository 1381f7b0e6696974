"""TrainConfig: every training acceleration as one validated switch.

Buys: one serializable record of how a run was accelerated (precision, compile,
accumulation, schedule, checkpoints). Costs: nothing at run time; it only validates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from accelkit.config import Config
from accelkit.errors import ConfigError

__all__ = ["PRECISIONS", "TrainConfig"]

CONFIG_VERSION = 1
PRECISIONS = ("fp32", "bf16", "fp16")
OPTIMIZERS = ("adamw", "sgd")
OPTIMIZER_IMPLS = ("auto", "fused", "foreach", "for-loop")
LR_SCALINGS = ("linear", "sqrt", "none")
DEVICES = ("cpu", "cuda", "auto")
STRATEGIES = ("ddp", "fsdp")
THROUGHPUT_UNITS = ("samples", "tokens")


def _choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r}: expected one of {list(choices)}")


def _positive(name: str, value: object, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}={value!r}: expected an integer >= 1")


@dataclass
class TrainConfig(Config):
    """How to train: precision, speed switches, batch/accumulation, schedule, checkpoints.

    Batch sizes: ``micro_batch_size`` samples go through the model per forward on each
    process; ``target_batch_size`` (the effective, global batch per optimizer step) sets
    the gradient accumulation: ``target = micro * accumulation * world_size``, exactly.
    ``lr`` is the learning rate at ``base_batch_size``; the ``lr_scaling`` rule
    (linear, sqrt or none) turns it into the LR used at ``target_batch_size``.
    """

    _omit_at_default: ClassVar[tuple[str, ...]] = ("group_by_length", "packed_dropout")  # added later: old dicts stay equal

    # precision and speed switches
    precision: str = "fp32"
    compile: bool = False
    compile_backend: str = "inductor"
    compile_mode: str | None = None
    # dropout masks from packed 16-bit draws in the compiled forward (train.techniques.packed_dropout)
    packed_dropout: bool = False
    channels_last: bool = False
    tf32: bool = True  # CUDA only (Ampere+); ignored on CPU
    # optimizer
    optimizer: str = "adamw"
    optimizer_impl: str = "auto"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only
    betas: tuple[float, float] = (0.9, 0.999)  # adamw only
    # batch and accumulation
    micro_batch_size: int = 32
    target_batch_size: int | None = None  # None: micro_batch_size * world_size, no accumulation
    base_batch_size: int | None = None  # batch size ``lr`` was tuned at; None: target
    lr_scaling: str = "linear"
    # schedule
    epochs: int = 1
    max_steps: int | None = None  # optimizer steps; None: epochs * steps_per_epoch
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of the peak LR
    grad_clip_norm: float | None = None
    # data
    shuffle: bool = True
    # batches of similar lengths: runs of 50 micro-batches of shuffled items, each sorted by length
    # (the dataset must have ``lengths``; its collate_fn pads per batch)
    group_by_length: bool = False
    num_workers: int = 0
    throughput_unit: str = "samples"  # "tokens": count input elements (B*T) per step
    # determinism and faults
    seed: int = 0
    max_nonfinite_steps: int = 3  # without a GradScaler: stop after this many in a row
    # device and distribution
    device: str = "auto"
    strategy: str = "ddp"
    # outputs
    output_dir: str | None = None  # metrics.jsonl and checkpoints/ go here
    checkpoint_every: int | None = None  # optimizer steps between checkpoints
    keep_checkpoints: int = 2
    resume: bool = False  # continue from output_dir's latest checkpoint when one exists
    stop_after_steps: int | None = None  # end this invocation early (time-sliced jobs)
    progress: bool = True
    version: int = CONFIG_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes carried to results

    def __post_init__(self) -> None:
        if self.packed_dropout and not self.compile:
            raise ConfigError("packed_dropout=True acts in the compiled forward: set compile=True (--compile) too")
        _choice("precision", self.precision, PRECISIONS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("optimizer_impl", self.optimizer_impl, OPTIMIZER_IMPLS)
        _choice("lr_scaling", self.lr_scaling, LR_SCALINGS)
        _choice("device", self.device, DEVICES)
        _choice("strategy", self.strategy, STRATEGIES)
        _choice("throughput_unit", self.throughput_unit, THROUGHPUT_UNITS)
        _positive("micro_batch_size", self.micro_batch_size)
        _positive("target_batch_size", self.target_batch_size, allow_none=True)
        _positive("base_batch_size", self.base_batch_size, allow_none=True)
        _positive("epochs", self.epochs)
        _positive("max_steps", self.max_steps, allow_none=True)
        _positive("checkpoint_every", self.checkpoint_every, allow_none=True)
        _positive("keep_checkpoints", self.keep_checkpoints)
        _positive("stop_after_steps", self.stop_after_steps, allow_none=True)
        _positive("max_nonfinite_steps", self.max_nonfinite_steps)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr={self.lr!r}: expected a finite number > 0")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay={self.weight_decay!r}: expected >= 0")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"min_lr_ratio={self.min_lr_ratio!r}: expected a fraction in [0, 1]")
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps={self.warmup_steps!r}: expected an integer >= 0")
        if self.grad_clip_norm is not None and not self.grad_clip_norm > 0:
            raise ConfigError(f"grad_clip_norm={self.grad_clip_norm!r}: expected > 0, or None to disable clipping")
        if self.num_workers < 0:
            raise ConfigError(f"num_workers={self.num_workers!r}: expected an integer >= 0")
        if (self.checkpoint_every or self.resume) and not self.output_dir:
            raise ConfigError("checkpoint_every/resume need output_dir: set output_dir to a folder for checkpoints")
        self.betas = tuple(self.betas)  # JSON round-trips give lists
        if self.version != CONFIG_VERSION:
            raise ConfigError(f"version={self.version!r}: this accelkit reads TrainConfig version {CONFIG_VERSION}")

    # --- derived values -------------------------------------------------------------
    def accumulation_steps(self, world_size: int = 1) -> int:
        """Micro-batches per optimizer step on each process; raises if it is not whole."""
        per_step = self.micro_batch_size * world_size
        target = self.target_batch_size or per_step
        if target % per_step:
            raise ConfigError(
                f"target_batch_size={target} is not a multiple of micro_batch_size*world_size="
                f"{self.micro_batch_size}*{world_size}={per_step}; pick a target that is"
            )
        return target // per_step

    def effective_batch_size(self, world_size: int = 1) -> int:
        return self.micro_batch_size * world_size * self.accumulation_steps(world_size)

    def scaled_lr(self, world_size: int = 1) -> float:
        """The peak LR after the scaling rule: lr * (target/base) (linear) or its sqrt."""
        target = self.effective_batch_size(world_size)
        base = self.base_batch_size or target
        ratio = target / base
        if self.lr_scaling == "linear":
            return self.lr * ratio
        if self.lr_scaling == "sqrt":
            return self.lr * math.sqrt(ratio)
        return self.lr

    # --- serialization ----------------------------------------------------------------
