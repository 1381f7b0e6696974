"""Dynamic padding for text: pad each batch to its longest sequence, not a fixed length.

With length-sorted batches the padded tokens nearly vanish, so attention and
the MLPs do only real work. Outputs are unchanged (masking already ignores padding);
the cost is that batch composition changes, which matters only for batch-norm models.
Offered only where the default run leaves padding to trim (a plain tokenizer call);
``fixed-length`` is the opposite, kept as a labelled reference row, never searched.
"""

from __future__ import annotations

from dataclasses import dataclass

from accelkit.config import Config
from accelkit.techniques.registry import FORMS, BuildContext, register_technique
from accelkit.workloads.base import RunSettings

__all__ = ["DynamicPaddingConfig", "FixedLengthConfig", "apply_dynamic_padding", "apply_fixed_length",
           "REFERENCE_TECHNIQUES"]

# rows measured for reference only: the search never tries them, tables label them
REFERENCE_TECHNIQUES = frozenset({"fixed-length"})


@dataclass
class DynamicPaddingConfig(Config):
    sort_by_length: bool = True
    version: int = 1


def apply_dynamic_padding(settings: RunSettings, config: DynamicPaddingConfig | None = None) -> RunSettings:
    """Settings that pad per batch (and sort by length when asked)."""
    config = config or DynamicPaddingConfig()
    return settings.with_(padding="dynamic", sort_by_length=config.sort_by_length)


@register_technique("dynamic-padding", group="input", description="length-sorted batches padded to their "
                    "longest sentence", needs=("text", "padded-batches"), accepts=FORMS, config=DynamicPaddingConfig)
def _dynamic_padding(model, ctx: BuildContext, config: DynamicPaddingConfig):
    return model, apply_dynamic_padding(ctx.settings, config)


@dataclass
class FixedLengthConfig(Config):
    """``max_length``: every batch is padded (and longer text truncated) to this many tokens,
    capped at the model's maximum: accelkit's earlier baseline (128), kept as a reference."""

    max_length: int = 128
    version: int = 1

    def __post_init__(self) -> None:
        if self.max_length < 1:
            from accelkit.errors import ConfigError

            raise ConfigError(f"max_length={self.max_length}: expected a positive integer")


def apply_fixed_length(settings: RunSettings, config: FixedLengthConfig | None = None) -> RunSettings:
    """Settings that pad every batch to a fixed length, in data order."""
    config = config or FixedLengthConfig()
    return settings.with_(padding="fixed", sort_by_length=False, max_length=min(config.max_length, settings.max_length))


@register_technique("fixed-length", group="input", description="reference: every batch padded to 128 tokens "
                    "in data order (no search)", needs=("text",), accepts=FORMS, objectives=())
def _fixed_length(model, ctx: BuildContext):
    return model, apply_fixed_length(ctx.settings)
