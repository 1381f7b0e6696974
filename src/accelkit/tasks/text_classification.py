"""text-classification: a sequence classifier's logits per text; quality is how often its top
class is the fp32 model's (and accuracy when the data has labels)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accelkit.tasks.base import TaskSpec
from accelkit.tasks.class_labels import class_ids, top1_quality
from accelkit.tasks.registry import register_task

if TYPE_CHECKING:
    import torch

__all__ = ["TextClassification"]


@register_task
class TextClassification(TaskSpec):
    name = "text-classification"
    primary_metric = "agreement"
    auto_class = "AutoModelForSequenceClassification"
    architectures = ("ForSequenceClassification",)

    def labels(self, raw: list | None, config: Any, source: Path) -> list[int] | None:
        return class_ids(raw, config, source)

    def quality(self, outputs: torch.Tensor, reference: torch.Tensor,
                labels: Sequence[Any] | None = None) -> dict[str, float]:
        return top1_quality(outputs, reference, labels, "agreement")
