"""Dynamic padding for text: pad each batch to its longest sequence, not a fixed length.

With length-sorted batches the padded tokens nearly vanish, so attention and
the MLPs do only real work. Outputs are unchanged (masking already ignores padding);
the cost is that batch composition changes, which matters only for batch-norm models.
"""

from __future__ import annotations

from dataclasses import dataclass

from accelkit.config import Config
from accelkit.techniques.registry import FORMS, BuildContext, register_technique
from accelkit.workloads.base import RunSettings

__all__ = ["DynamicPaddingConfig", "apply_dynamic_padding"]


@dataclass
class DynamicPaddingConfig(Config):
    sort_by_length: bool = True
    version: int = 1


def apply_dynamic_padding(settings: RunSettings, config: DynamicPaddingConfig | None = None) -> RunSettings:
    """Settings that pad per batch (and sort by length when asked)."""
    config = config or DynamicPaddingConfig()
    return settings.with_(padding="dynamic", sort_by_length=config.sort_by_length)


@register_technique("dynamic-padding", group="input", description="length-sorted batches padded to their "
                    "longest sentence", needs=("text",), accepts=FORMS)
def _dynamic_padding(model, ctx: BuildContext):
    return model, apply_dynamic_padding(ctx.settings)
