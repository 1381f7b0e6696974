"""Prompt-lookup speculation on OpenVINO: greedy decoding that guesses the next tokens by copying
what followed the row's last n-gram, in its own text or in what the model wrote before, and checks
the guesses in one call.

Buys: several tokens a call wherever the text repeats itself or the model repeats its own phrases
(names, code, quoted phrases, the loops a small model falls into), with no draft model to train or
hold; output is the model's own greedy tokens (a guess is kept only where it equals the model's
argmax). The guesses come from the row's own text and from an n-gram store of the model's greedy
continuations of the calibration prompts, whichever matches more of the row's last ids. At batch 1
a call is bound by reading the weights, so reading 5 tokens costs little more than reading one.
On generate_llama.py's trained 11.3M Llama (2-core Zen 4, 64 held-out prompts, 64 new tokens, a
store of its 64 calibration prompts): 2.8 tokens a call (1.66 without the store) and 6.11x
generate's tokens/s, against 2.67x for openvino-generate and 3.59x for static-cache-compile in the
same run, every token the same, the first token at 0.39x generate's time.
Costs: writing the store's continuations at build time (seconds); the graph returns every read
position's logits (a prompt pass computes the output layer for the whole prompt); rejected
guesses leave masked slots in the cache (at most ``draft_tokens`` + 1 a call); on text unlike
the calibration prompts, only the row's own repeats help. Sampling runs openvino-generate's loop,
and so do batches by default: a call verifies for its slowest row and pays for every column.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from accelkit.config import Config
from accelkit.errors import ConfigError
from accelkit.export.openvino_lm import export_stateful_lm
from accelkit.runtimes.openvino_lm import OpenVinoLm, OpenVinoLmConfig
from accelkit.runtimes.prompt_lookup import NgramStore
from accelkit.techniques.openvino_generate import built_runner, transformers_causal_lm
from accelkit.techniques.openvino_runtime import OPENVINO_AVAILABLE
from accelkit.techniques.registry import BuildContext, Built, register_technique

__all__ = ["PromptLookupConfig", "openvino_prompt_lookup"]


@dataclass
class PromptLookupConfig(Config):
    """``draft_tokens``: tokens guessed and verified per call at most (1-16; 4 measured best of 3, 4, 6 and 8 on the trained Llama); ``ngram``: the
    longest run of the row's last ids matched (shorter ones are tried after it);
    ``batch_draft_tokens``: drafts a row per call in a batch of several rows (0-16; 0, the default:
    openvino-generate's loop). At batch 8 on the trained Llama, 2 drafts wrote 1.95 tokens a call
    at 1.7x a call's time: 0.78-1.06x openvino-generate, no reliable gain; ``store_prompts``:
    calibration prompts the model writes greedy continuations of (``max_new_tokens`` each) for the
    n-gram store drafts are also read from (0: the row's own text only); ``threads``: None for
    accelkit's thread count here. Computes in f32 with an f32 cache: the exact plan."""

    draft_tokens: int = 4
    ngram: int = 3
    batch_draft_tokens: int = 0
    store_prompts: int = 256
    threads: int | None = None
    version: int = 1

    def __post_init__(self) -> None:
        for name in ("draft_tokens", "ngram"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 16:
                raise ConfigError(f"{name}={value!r}: expected a whole number from 1 to 16")
        value = self.batch_draft_tokens
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 16:
            raise ConfigError(f"batch_draft_tokens={value!r}: expected a whole number from 0 to 16")
        value = self.store_prompts
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"store_prompts={value!r}: expected 0 (no store) or a number of calibration prompts")
        self.runtime_config()  # the runtime checks the thread count

    def runtime_config(self) -> OpenVinoLmConfig:
        return OpenVinoLmConfig(threads=self.threads, lookup_tokens=self.draft_tokens, lookup_ngram=self.ngram,
                                lookup_batch_tokens=self.batch_draft_tokens)


def openvino_prompt_lookup(model: nn.Module, config: PromptLookupConfig | None = None,
                           store_from: Iterable[dict[str, torch.Tensor]] = (), max_new_tokens: int = 64) -> OpenVinoLm:
    """``model`` (a transformers causal LM, fp32, eval) as a stateful OpenVINO graph returning every
    position's logits, whose greedy batch-1 ``generate`` verifies prompt-lookup drafts: from the
    row's own text, and from an n-gram store of the model's greedy continuations
    (``max_new_tokens`` each) of the prompt batches ``store_from`` (input_ids, attention_mask;
    none: no store)."""
    config = config or PromptLookupConfig()
    model = transformers_causal_lm(model, "openvino-prompt-lookup")
    details = {"decode": "OpenVINO stateful graph, prompt-lookup drafts verified at batch 1",
               "draft_tokens": config.draft_tokens, "ngram": config.ngram}
    runner = OpenVinoLm(export_stateful_lm(model, all_logits=True), config.runtime_config(), model=model,
                        details=details)
    sequences = []
    for inputs in store_from:  # the plain loop writes them: the store holds the graph's own greedy tokens
        mask = inputs.get("attention_mask", torch.ones_like(inputs["input_ids"]))
        out = runner.decode(inputs["input_ids"], mask, max_new_tokens, pad_token_id=0)
        length = inputs["input_ids"].shape[1]
        sequences += [torch.cat([row[:length][m.bool()], row[length:]]).tolist() for row, m in zip(out, mask, strict=True)]
    if sequences:
        runner.lookup_store = NgramStore.from_sequences(sequences, config.ngram, max(config.draft_tokens, 16))
        runner.extra.update(store_prompts=len(sequences), store_ngrams=len(runner.lookup_store))
    return runner


@register_technique("openvino-prompt-lookup", group="runtime", description="openvino-generate verifying "
                    "prompt-lookup drafts (tokens copied from the row's earlier text or the model's own "
                    "earlier continuations) several a call: greedy batch 1, exact tokens", needs=("generate",), accepts=("eager",),
                    produces=OpenVinoLm.form, voids=("autocast",), objectives=("latency", "throughput"),
                    available=OPENVINO_AVAILABLE, config=PromptLookupConfig)
def _openvino_prompt_lookup(model: nn.Module, ctx: BuildContext, config: PromptLookupConfig) -> Built:
    wl = ctx.workload

    def make() -> OpenVinoLm:
        # batches of 8 prompts write the store's continuations several times faster than one at a time
        prompts = ctx.calib_batches(config.store_prompts, batch_size=8) if config.store_prompts else []
        return openvino_prompt_lookup(model, config, prompts, getattr(wl, "max_new_tokens", 64))

    return built_runner(make, ctx, config)
