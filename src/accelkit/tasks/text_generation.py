"""text-generation: a causal language model writing up to ``max_new_tokens`` after each prompt
(``model.generate``); quality is greedy-token agreement with the fp32 model's own output."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accelkit.tasks.base import TaskSpec
from accelkit.tasks.causal_lm import pad_with_eos
from accelkit.tasks.registry import register_task

if TYPE_CHECKING:
    import torch

__all__ = ["TextGeneration", "generation_agreement"]


@register_task
class TextGeneration(TaskSpec):
    name = "text-generation"
    primary_metric = "greedy_agreement"
    item_unit = "tokens"
    default_batch_size = 8
    auto_class = "AutoModelForCausalLM"
    method = "generate"
    # no architectures: a causal-LM folder still means causal-lm unless --task text-generation is asked
    offers = frozenset({"generate"})

    def quality(self, outputs: torch.Tensor, reference: torch.Tensor,
                labels: Sequence[Any] | None = None) -> dict[str, float]:
        return generation_agreement(outputs, reference)

    def prepare_tokenizer(self, tokenizer: Any, folder: Path) -> None:
        # batched prompts are padded on the left so every row's new tokens start at the same column
        pad_with_eos(tokenizer, folder, side="left")


def generation_agreement(outputs: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """Greedy-token agreement of generated ids (one row per prompt, −1 after a row's end) with the
    fp32 model's: over every reference position (``greedy_agreement``), the share of prompts
    written identically to the end (``identical_outputs``), the share of positions before each
    row's first divergence (``prefix_agreement``) and the mean first-divergence position
    (``first_divergence``; a row that never diverges counts its full length)."""
    import torch

    valid = reference >= 0
    lengths = valid.sum(1)
    same = (outputs == reference) & valid
    differs = ~same & valid
    # the first differing column per row, or the row's length when none differs
    first = torch.where(differs.any(1), differs.float().argmax(1), lengths)
    total = lengths.sum().clamp(min=1)
    return {"greedy_agreement": float(same.sum() / total),
            "prefix_agreement": float(first.sum() / total),
            "identical_outputs": float((first == lengths).float().mean()) if len(first) else 1.0,
            "first_divergence": float(first.float().mean()) if len(first) else 0.0}
