"""Length-grouped batches: each run of 50 shuffled micro-batches is sorted by length, so a batch
holds texts of similar lengths and pads less (the transformers Trainer's ``group_by_length``).
Buys: fewer padded tokens computed. Costs: batches less random within a group (still shuffled
across groups)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from accelkit.config import Config
from accelkit.train.techniques.registry import TrainVariant, register_training_technique

__all__ = ["LengthGroupingConfig"]


@dataclass
class LengthGroupingConfig(Config):
    version: int = 1


@register_training_technique(
    "length-grouping", group="data-order", config=LengthGroupingConfig, needs=("lengths",),
    description="batches of similar lengths (runs of 50 batches sorted), padded per batch; buys less padding, "
                "costs some randomness within a run")
def apply_length_grouping(variant: TrainVariant, config: LengthGroupingConfig) -> TrainVariant:
    return dataclasses.replace(variant, group_by_length=True)
