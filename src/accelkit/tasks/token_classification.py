"""token-classification: a label per token (named entities, parts of speech); quality is how
often a token's top label is the fp32 model's, over the tokens the attention mask keeps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from accelkit.tasks.base import TaskSpec
from accelkit.tasks.registry import register_task

if TYPE_CHECKING:
    import torch

__all__ = ["TokenClassification", "token_agreement"]


@register_task
class TokenClassification(TaskSpec):
    name = "token-classification"
    primary_metric = "token_agreement"
    auto_class = "AutoModelForTokenClassification"
    architectures = ("ForTokenClassification",)

    def reduce(self, output: torch.Tensor, inputs: dict[str, torch.Tensor], *, pooling: str = "mean",
               width: int = 512) -> torch.Tensor:
        """Per text, fixed width: the top label of each kept token, in order from the first
        (whatever the padding side), −1 after the last."""
        import torch

        labels = output.argmax(-1)
        keep = inputs["attention_mask"].bool()
        out = torch.full((len(labels), width), -1.0)
        for row in range(len(labels)):
            kept = labels[row][keep[row]][:width]
            out[row, : len(kept)] = kept.float()
        return out

    def quality(self, outputs: torch.Tensor, reference: torch.Tensor,
                labels: Sequence[Any] | None = None) -> dict[str, float]:
        return {"token_agreement": token_agreement(outputs, reference)}


def token_agreement(outputs: torch.Tensor, reference: torch.Tensor) -> float:
    """The share of the reference's tokens (entries ≥ 0) whose label ``outputs`` repeats."""
    valid = reference >= 0
    return float(((outputs == reference) & valid).sum() / valid.sum().clamp(min=1))
