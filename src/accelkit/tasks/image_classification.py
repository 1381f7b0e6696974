"""image-classification: an image classifier's logits per image, its inputs made by the folder's
image processor; quality is top-1 agreement with the fp32 model (and accuracy when the images
sit in class sub-folders)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accelkit.tasks.base import TaskSpec
from accelkit.tasks.class_labels import class_ids, top1_quality
from accelkit.tasks.registry import register_task

if TYPE_CHECKING:
    import torch

__all__ = ["ImageClassification"]


@register_task
class ImageClassification(TaskSpec):
    name = "image-classification"
    inputs = "images"
    primary_metric = "top1_agreement"
    item_unit = "images"
    auto_class = "AutoModelForImageClassification"
    preprocessor_class = "AutoImageProcessor"
    architectures = ("ForImageClassification",)

    def labels(self, raw: list | None, config: Any, source: Path) -> list[int] | None:
        return class_ids(raw, config, source)

    def quality(self, outputs: torch.Tensor, reference: torch.Tensor,
                labels: Sequence[Any] | None = None) -> dict[str, float]:
        return top1_quality(outputs, reference, labels, "top1_agreement")
