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

from dataclasses import dataclass

from torch import nn

from accelkit.config import Config
from accelkit.errors import ConfigError
from accelkit.export.openvino_lm import export_stateful_lm
from accelkit.runtimes.openvino_lm import OpenVinoLm, OpenVinoLmConfig
from accelkit.techniques.openvino_generate import built_runner, transformers_causal_lm
from accelkit.techniques.openvino_runtime import OPENVINO_AVAILABLE
from accelkit.techniques.registry import BuildContext, Built, register_technique

__all__ = ["PromptLookupConfig", "openvino_prompt_lookup"]


@dataclass
class PromptLookupConfig(Config):
    """``draft_tokens``: tokens guessed and verified per call at most (1-16; 4 measured best of 3, 4, 6 and 8 on the trained Llama); ``ngram``: the
    longest run of the row's last ids matched (shorter ones are tried after it); ``threads``:
    None for accelkit's thread count here. Computes in f32 with an f32 cache: the exact plan."""

    draft_tokens: int = 4
    ngram: int = 3
    threads: int | None = None
    version: int = 1

    def __post_init__(self) -> None:
        for name in ("draft_tokens", "ngram"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 16:
                raise ConfigError(f"{name}={value!r}: expected a whole number from 1 to 16")
        self.runtime_config()  # the runtime checks the thread count

    def runtime_config(self) -> OpenVinoLmConfig:
        return OpenVinoLmConfig(threads=self.threads, lookup_tokens=self.draft_tokens, lookup_ngram=self.ngram)


def openvino_prompt_lookup(model: nn.Module, config: PromptLookupConfig | None = None) -> OpenVinoLm:
    """``model`` (a transformers causal LM, fp32, eval) as a stateful OpenVINO graph returning every
    position's logits, whose greedy batch-1 ``generate`` verifies prompt-lookup drafts."""
    config = config or PromptLookupConfig()
    model = transformers_causal_lm(model, "openvino-prompt-lookup")
    details = {"decode": "OpenVINO stateful graph, prompt-lookup drafts verified at batch 1",
               "draft_tokens": config.draft_tokens, "ngram": config.ngram}
    return OpenVinoLm(export_stateful_lm(model, all_logits=True), config.runtime_config(), model=model,
                      details=details)


@register_technique("openvino-prompt-lookup", group="runtime", description="openvino-generate verifying "
                    "prompt-lookup drafts (tokens copied from the row's earlier text) several a call: "
                    "greedy batch 1, exact tokens", needs=("generate",), accepts=("eager",),
                    produces=OpenVinoLm.form, voids=("autocast",), objectives=("latency", "throughput"),
                    available=OPENVINO_AVAILABLE, config=PromptLookupConfig)
def _openvino_prompt_lookup(model: nn.Module, ctx: BuildContext, config: PromptLookupConfig) -> Built:
    return built_runner(lambda: openvino_prompt_lookup(model, config), ctx, config)
