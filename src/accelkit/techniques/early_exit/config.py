"""What an early-exit model is asked to do: where the heads go, what they learn, when a row may leave
(``EarlyExitConfig``), and the names its criteria and training regimes take."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from accelkit.config import Config
from accelkit.errors import ConfigError

__all__ = ["BACKBONE_TRAINING", "CRITERIA", "EarlyExitConfig", "TRAINING"]


CRITERIA = ("confidence", "entropy", "patience", "stability")
TRAINING = ("distill", "joint", "staged")
BACKBONE_TRAINING = ("joint", "staged")  # these change the backbone: it is saved with the heads


@dataclass
class EarlyExitConfig(Config):
    """Where the exit heads go, what they predict, and when a row may leave.

    ``criterion``: ``confidence`` (exit when max softmax ≥ threshold), ``entropy`` (exit when
    normalised entropy ≤ threshold), ``patience`` (exit when ``patience`` consecutive heads
    agree, PABEE), ``stability`` (embedding models: exit when the cosine between consecutive
    heads' pooled embeddings ≥ threshold). ``thresholds``: one per exit head, ``None`` = that
    head never exits (set by calibration). ``block_names``: module paths of the blocks in call
    order, e.g. ``["blocks.0", "blocks.1", "blocks.2"]``, when they cannot be found by name.
    """

    # added after the first release: left out of to_dict() at their default (None), so earlier cache keys stay valid
    _omit_at_default: ClassVar[tuple[str, ...]] = ("joint_epochs", "joint_lr", "anchor_exit")

    criterion: str = "confidence"
    exit_after: list[int] | None = None  # block indices with a head; None = all but the last
    thresholds: list[float | None] | None = None
    patience: int = 2
    training: str = "distill"  # distill: backbone frozen, heads learn the final output; joint; staged (embeddings)
    epochs: int = 300
    lr: float = 3e-3
    joint_epochs: int | None = None  # joint/staged: passes over the data (None: epochs // 30)
    joint_lr: float | None = None  # joint/staged: backbone learning rate (None: lr / 10)
    anchor_exit: int | None = None  # training="staged": the block whose exit is trained first (None: the last exit)
    weight_decay: float = 1e-3
    temperature: float = 2.0
    head_pool: int = 4  # conv features are average-pooled to at most head_pool×head_pool
    head_hidden: int = 0  # 0 = linear head; >0 adds one hidden ReLU layer
    block_names: list[str] | None = None
    final_names: list[str] | None = None  # modules applied after the last block, in order
    shift_augment: bool = True  # image inputs: also learn from ±1 pixel shifted copies
    seed: int = 0
    version: int = 1

    def __post_init__(self) -> None:
        if self.criterion not in CRITERIA:
            raise ConfigError(f"criterion={self.criterion!r}: expected one of {list(CRITERIA)}")
        if self.training not in TRAINING:
            raise ConfigError(f"training={self.training!r}: expected one of {list(TRAINING)}")
        if self.patience < 1:
            raise ConfigError(f"patience={self.patience}: expected an integer ≥ 1")
        if self.exit_after is not None and (not self.exit_after or min(self.exit_after) < 0):
            raise ConfigError(f"exit_after={self.exit_after}: expected non-empty block indices ≥ 0")
        if self.epochs < 0 or self.lr <= 0 or self.temperature <= 0:
            raise ConfigError(
                f"epochs={self.epochs}, lr={self.lr}, temperature={self.temperature}: "
                "expected epochs ≥ 0 and positive lr and temperature"
            )
        if (self.joint_epochs is not None and self.joint_epochs < 1) or (
            self.joint_lr is not None and not self.joint_lr > 0
        ):
            raise ConfigError(
                f"joint_epochs={self.joint_epochs}, joint_lr={self.joint_lr}: expected None or ≥ 1 and a positive rate"
            )
        if self.anchor_exit is not None and (self.exit_after is None or self.anchor_exit not in self.exit_after):
            raise ConfigError(
                f"anchor_exit={self.anchor_exit}: expected one of exit_after={self.exit_after} (set both, or neither)"
            )
        if self.head_pool < 1 or self.head_hidden < 0:
            raise ConfigError(f"head_pool={self.head_pool}, head_hidden={self.head_hidden}: expected ≥ 1, ≥ 0")
