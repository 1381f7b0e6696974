"""Prompt-lookup speculation on OpenVINO: greedy batch-1 decoding that guesses the next tokens by
copying what followed the row's last n-gram earlier in its text, and checks the guesses in one call.

Buys: several tokens a call wherever the text repeats itself (names, code, quoted phrases, the
loops a small model falls into), with no draft model to train or hold; output is the model's own
greedy tokens (a guess is kept only where it equals the model's argmax). At batch 1 a call is
bound by reading the weights, so reading 5 tokens costs little more than reading one (2.60-2.72
against 2.44-2.65 ms on generate_llama.py's trained 11.3M Llama, 2-core Zen 4). There, at 1.66
tokens a call: 4.41x generate's tokens/s, against 3.41x for openvino-generate and 3.98x for
static-cache-compile, every token the same, and the first token at 0.37x generate's time.
Costs: the graph returns every read position's logits (a prompt pass computes the output layer for
the whole prompt); rejected guesses leave masked slots in the cache (at most ``draft_tokens`` + 1
slots a call); nothing gained on text that does not repeat; greedy at batch 1 only: a batch of
several rows, or sampling, runs openvino-generate's loop (each call verifies for its slowest row,
so at batch 8 it cost more than it saved: 1.42 tokens a call against 1.5-2.1x a call's time).
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
    ``batch_draft_tokens``: drafts a row per call in a batch of several rows (0-16; 0: the plain
    loop), fewer than at batch 1 because there each column read costs a share of a call; ``store_prompts``:
    calibration prompts the model writes greedy continuations of (``max_new_tokens`` each) for the
    n-gram store drafts are also read from (0: the row's own text only); ``threads``: None for
    accelkit's thread count here. Computes in f32 with an f32 cache: the exact plan."""

    draft_tokens: int = 4
    ngram: int = 3
    batch_draft_tokens: int = 2
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
                    "prompt-lookup drafts (tokens copied from the row's earlier text) several a call: "
                    "greedy batch 1, exact tokens", needs=("generate",), accepts=("eager",),
                    produces=OpenVinoLm.form, voids=("autocast",), objectives=("latency", "throughput"),
                    available=OPENVINO_AVAILABLE, config=PromptLookupConfig)
def _openvino_prompt_lookup(model: nn.Module, ctx: BuildContext, config: PromptLookupConfig) -> Built:
    wl = ctx.workload

    def make() -> OpenVinoLm:
        # batches of 8 prompts write the store's continuations several times faster than one at a time
        prompts = ctx.calib_batches(config.store_prompts, batch_size=8) if config.store_prompts else []
        return openvino_prompt_lookup(model, config, prompts, getattr(wl, "max_new_tokens", 64))

    return built_runner(make, ctx, config)
