"""Speculative decoding with the user's draft model: the draft proposes tokens, the model checks
them all in one pass (transformers' assisted generation), so greedy output is the model's own."""

from __future__ import annotations

from typing import Any

from torch import nn

from accelkit.techniques.registry import BuildContext, Built, register_technique

__all__ = ["AssistedGeneration"]


class AssistedGeneration(nn.Module):
    """A causal LM whose ``generate`` drafts with ``draft`` (``assistant_model=``); called like
    the model otherwise."""

    def __init__(self, model: nn.Module, draft: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.draft = draft

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        return self.model.generate(*args, assistant_model=self.draft, **kwargs)


@register_technique("speculative", group="runtime", description="speculative decoding: the user's --draft model "
                    "proposes, the model verifies (greedy output unchanged; batch 1)", needs=("generate", "draft-model"),
                    accepts=("eager", "eager-lowp", "quantized"), produces="dynamic", objectives=("throughput", "latency"),
                    saveable=False)
def _speculative(model: nn.Module, ctx: BuildContext) -> Built:
    draft = ctx.workload.draft_model().to(ctx.settings.device)
    # transformers' assisted generation verifies one sequence at a time
    settings = ctx.settings.with_(batch_size=1)
    params = sum(p.numel() for p in draft.parameters())
    return Built(AssistedGeneration(model, draft), settings, {"draft_params": params, "batch_size": 1})
