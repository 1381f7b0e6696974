"""causal-lm: a language model scored on whole sequences (no generation, no key/value cache);
quality is next-token agreement with the fp32 model and the change in perplexity."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accelkit.errors import ModelFolderError
from accelkit.tasks.base import TaskSpec
from accelkit.tasks.registry import register_task

if TYPE_CHECKING:
    import torch

__all__ = ["CausalLM", "causal_lm_quality", "next_token_summary"]


@register_task
class CausalLM(TaskSpec):
    name = "causal-lm"
    primary_metric = "next_token_agreement"
    item_unit = "sequences"
    auto_class = "AutoModelForCausalLM"
    architectures = ("ForCausalLM", "LMHeadModel")

    def reduce(self, output: torch.Tensor, inputs: dict[str, torch.Tensor], *, pooling: str = "mean",
               width: int = 512) -> torch.Tensor:
        return next_token_summary(output, inputs["input_ids"], inputs["attention_mask"], width)

    def quality(self, outputs: torch.Tensor, reference: torch.Tensor,
                labels: Sequence[Any] | None = None) -> dict[str, float]:
        return causal_lm_quality(outputs, reference)

    def prepare_config(self, config: Any) -> None:
        if hasattr(config, "use_cache"):
            config.use_cache = False  # scoring whole sequences: no key/value cache to build or export

    def prepare_tokenizer(self, tokenizer: Any, folder: Path) -> None:
        pad_with_eos(tokenizer, folder, side="right")


def pad_with_eos(tokenizer: Any, folder: Path, *, side: str) -> None:
    """Give a tokenizer without a pad token (GPT-2, Llama) EOS as its pad token, as Hugging Face's
    own examples do (the attention mask keeps it out of every score), and pad on ``side``;
    ModelFolderError when it has no EOS either."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelFolderError(f"--model {folder}: the tokenizer has neither a pad nor an EOS token; set "
                                   "tokenizer.pad_token and save it")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = side


def next_token_summary(logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor, width: int) -> torch.Tensor:
    """Per sequence, fixed width: [summed next-token NLL, predicted tokens, argmax ids (−1 after the
    end)]. Sequences of different padded lengths then reassemble into one tensor."""
    import torch

    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    target = input_ids[:, 1:]
    valid = mask[:, 1:].bool() & mask[:, :-1].bool()
    nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    pred = logp.argmax(-1).masked_fill(~valid, -1).float()
    out = torch.full((len(logits), 2 + width), -1.0)
    out[:, 0] = (nll * valid).sum(1)
    out[:, 1] = valid.sum(1).float()
    out[:, 2 : 2 + pred.shape[1]] = pred[:, :width]
    return out


def causal_lm_quality(outputs: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """Next-token agreement with the fp32 model's predictions, and the perplexity change."""
    import torch

    valid = reference[:, 2:] >= 0
    agree = ((outputs[:, 2:] == reference[:, 2:]) & valid).sum() / valid.sum().clamp(min=1)
    tokens = outputs[:, 1].sum().clamp(min=1)
    ppl = float(torch.exp(outputs[:, 0].sum() / tokens))
    ref_ppl = float(torch.exp(reference[:, 0].sum() / reference[:, 1].sum().clamp(min=1)))
    return {"next_token_agreement": float(agree), "perplexity": ppl, "perplexity_change": ppl / ref_ppl - 1}
