"""Channels-last memory format for convolutional models (weights and 4-D inputs NHWC). Buys:
oneDNN/cuDNN's faster NHWC convolutions. Costs: a layout conversion of each input batch; nothing
for models without convolutions."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from accelkit.config import Config
from accelkit.train.techniques.registry import TrainVariant, register_training_technique

__all__ = ["ChannelsLastConfig"]


@dataclass
class ChannelsLastConfig(Config):
    version: int = 1


@register_training_technique(
    "channels-last", group="memory-format", config=ChannelsLastConfig, needs=("images",),
    description="NHWC weights and image batches; buys faster convolutions, costs a layout conversion per batch")
def apply_channels_last(variant: TrainVariant, config: ChannelsLastConfig) -> TrainVariant:
    return dataclasses.replace(variant, channels_last=True)
