"""Self-speculative decoding in which the draft and the verifier both run compiled steps over
static key/value caches: a cheaper copy of the model (its bf16 cast, or its first k layers)
drafts ``draft_tokens`` tokens one compiled step at a time, then one compiled step of the model
itself reads the last accepted token and the drafts together and gives its greedy token after
each; the drafts that equal those are kept, with the model's own token after them, and both
caches are rewound past what was rejected (a static cache only moves its write position back;
stale entries beyond it are masked and overwritten).

Buys: the steps of ``static-cache-compile`` (no ``generate`` bookkeeping, fused kernels) for both
models, with the verifier's weights read once per round instead of once per token; output is
the model's own greedy tokens (each round keeps only drafts the model itself picks).
Costs: the draft's memory (a bf16 copy: half the model's; the first-k-layers view shares the
weights); two compiled steps for the verifier (one token after the prompt pass, ``draft_tokens``
+ 1 per round) and one for the draft, compiled at build time; batch 1 without padding (any other
call runs the plain static-cache loop); greedy only. The verify step reads several tokens in one
pass, so its logits can differ from one-token decoding's in the last bits (GEMM versus GEMV
order): a near-tie can flip where the model's fp32 argmax is within rounding, as with
transformers' assisted generation.

Measured (benchmarks/explore/decode_step_profile.py: random-weight 6-layer, 384-wide Llama, batch
1, 64 new tokens, 2 threads, 2-core Zen 4), it does not yet beat the plain compiled loop there:
1.90 ms a token for static-cache-compile, 2.15 (first 2 layers drafting 3) and 2.75 (bf16 drafting
4) here, with every draft accepted, because the 5-token verify step takes 4.4 ms (2.3 one-token
steps; the multiply-and-sum linears reduce each token separately) and a bf16 draft step 1.4 ms
(inductor computes the bf16 reduction in fp32, so it reads half the bytes but does the same work).
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from accelkit.config import Config
from accelkit.errors import ConfigError
from accelkit.runtimes.decoding import decoding_defaults, eos_and_pad, lean_greedy
from accelkit.techniques.registry import BuildContext, Built, register_technique
from accelkit.techniques.self_speculative import decoder_layers, early_exit_view
from accelkit.techniques.static_cache import StaticCacheConfig, StaticCacheGenerator, causal_lm_of

__all__ = ["CompiledSpeculativeConfig", "CompiledSpeculativeGenerator"]

_DRAFTS = ("bf16", "layers")


@dataclass
class CompiledSpeculativeConfig(Config):
    """``draft``: "bf16" (the model cast to bf16) or "layers" (its first ``exit_layer`` layers,
    default half); ``draft_tokens``: tokens drafted per verify step; ``step``: the compile
    options of both models' steps (static-cache-compile's config)."""

    draft: str = "bf16"
    draft_tokens: int = 4
    exit_layer: int | None = None
    step: StaticCacheConfig | None = None
    version: int = 1

    def __post_init__(self) -> None:
        if self.draft not in _DRAFTS:
            raise ConfigError(f"draft={self.draft!r}: expected one of {', '.join(_DRAFTS)}")
        if isinstance(self.draft_tokens, bool) or not isinstance(self.draft_tokens, int) \
                or not 1 <= self.draft_tokens <= 16:
            raise ConfigError(f"draft_tokens={self.draft_tokens!r}: expected a whole number from 1 to 16")
        if self.exit_layer is not None and (isinstance(self.exit_layer, bool) or not isinstance(self.exit_layer, int)
                                            or self.exit_layer < 1):
            raise ConfigError(f"exit_layer={self.exit_layer!r}: expected a positive layer count, or null for half")
        if isinstance(self.step, dict):
            self.step = StaticCacheConfig.from_dict(self.step)


def make_draft(model: nn.Module, config: CompiledSpeculativeConfig) -> nn.Module:
    if config.draft == "bf16":
        return copy.deepcopy(model).to(torch.bfloat16).eval()
    n = len(decoder_layers(model)[2])
    return early_exit_view(model, config.exit_layer if config.exit_layer is not None else max(1, n // 2))


def _rewind(cache: Any, tokens: int) -> None:
    """Move every layer's write position back by ``tokens`` (in place: compiled steps hold the tensor)."""
    if tokens:
        for layer in cache.layers:
            layer.cumulative_length.sub_(tokens)


class CompiledSpeculativeGenerator(nn.Module):
    """A causal LM whose greedy batch-1 ``generate`` drafts with ``draft`` and verifies with
    ``model``, both through compiled static-cache steps; called like the model otherwise."""

    def __init__(self, model: nn.Module, draft: nn.Module, config: CompiledSpeculativeConfig | None = None) -> None:
        super().__init__()
        self.config = config or CompiledSpeculativeConfig()
        step = self.config.step or StaticCacheConfig()
        self.model = model
        self.target = StaticCacheGenerator(model, step)
        self.drafter = StaticCacheGenerator(draft, step)
        self.stats = {"rounds": 0, "accepted": 0}

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    def generate(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                 **kwargs: Any) -> torch.Tensor:
        defaults = decoding_defaults(getattr(self.model, "generation_config", None))
        if not lean_greedy(input_ids, kwargs, defaults):
            return self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        if input_ids.shape[0] != 1 or (attention_mask is not None and not bool(attention_mask.all())):
            return self.target.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        eos, _ = eos_and_pad(kwargs, defaults)
        return self.speculate(input_ids, kwargs["max_new_tokens"], eos_token_id=eos)

    def speculate(self, input_ids: torch.Tensor, max_new_tokens: int, *,
                  eos_token_id: int | list[int] | None = None) -> torch.Tensor:
        if max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens={max_new_tokens}: expected a positive number of tokens to write")
        k = self.config.draft_tokens
        length = input_ids.shape[1]
        device = input_ids.device
        bucket = self.target.config.bucket
        # room for a full verify block after the last token that can be kept
        total = -(-(length + max_new_tokens + k) // bucket) * bucket
        caches = []
        for runner in (self.target, self.drafter):
            dtype = next(runner.model.parameters()).dtype
            caches.append(runner._cache(1, total, dtype, device))
        target_cache, draft_cache = caches
        # every position may be attended to: causality by cache position hides the unwritten ones
        full = torch.ones(1, total, dtype=input_ids.dtype, device=device)
        positions = torch.arange(length, device=device)
        first = None
        for runner, cache in ((self.target, target_cache), (self.drafter, draft_cache)):
            out = runner.model(input_ids=input_ids, attention_mask=full, position_ids=positions[None],
                               cache_position=positions, use_cache=True, **{runner._cache_arg: cache})
            if first is None:
                first = out.logits[:, -1].argmax(-1, keepdim=True)
            del out
        eos = (set([eos_token_id] if isinstance(eos_token_id, int) else eos_token_id)
               if eos_token_id is not None else set())
        written = [first]
        count, pos, token = 1, length, first
        offsets = torch.arange(k + 1, device=device)
        while count < max_new_tokens and not (eos and int(token) in eos):
            drafts, cur = [], token
            for i in range(k):
                cur = self.drafter._step(cur, torch.tensor([[pos + i]], device=device),
                                         torch.tensor([pos + i], device=device), full, draft_cache)
                drafts.append(cur)
            drafted = torch.cat(drafts, dim=1)
            where = offsets + pos
            verified = self.target._step(torch.cat([token, drafted], dim=1), where[None], where, full, target_cache)
            # the drafts up to the first the model would not have written, then the model's own token
            n = int((drafted == verified[:, :k]).int().cumprod(-1).sum())
            self.stats["rounds"] += 1
            self.stats["accepted"] += n
            _rewind(target_cache, k - n)
            if n == k:  # the draft has not read its own last draft yet
                self.drafter._step(drafted[:, -1:], torch.tensor([[pos + k]], device=device),
                                   torch.tensor([pos + k], device=device), full, draft_cache)
            else:
                _rewind(draft_cache, k - n - 1)
            new = verified[:, :n + 1]
            if eos:
                hits = [i for i, t in enumerate(new[0].tolist()) if t in eos]
                if hits:
                    new = new[:, :hits[0] + 1]
            written.append(new)
            count += new.shape[1]
            pos += n + 1
            token = new[:, -1:]
        return torch.cat([input_ids, *written], dim=1)[:, :length + max_new_tokens]

    def warm_up(self, ctx: BuildContext) -> float:
        """Compile both models' steps on one calibration prompt; seconds taken."""
        start = time.perf_counter()
        data = ctx.calib_data(1)
        ctx.workload.predict(self, data, ctx.settings.with_(batch_size=1))
        return round(time.perf_counter() - start, 2)


@register_technique("speculative-compiled", group="runtime", description="self-speculative decoding with compiled "
                    "static-cache steps for a bf16 (or first-k-layers) draft and the model's verify step (greedy "
                    "output unchanged; batch 1)", needs=("generate",), accepts=("eager",), produces="graph",
                    objectives=("throughput", "latency"), saveable=False, config=CompiledSpeculativeConfig)
def _speculative_compiled(model: nn.Module, ctx: BuildContext, config: CompiledSpeculativeConfig) -> Built:
    model = causal_lm_of(model)
    if getattr(model, "config", None) is None or not callable(getattr(model, "generate", None)):
        raise ConfigError(f"speculative-compiled needs a transformers causal LM (with .config and generate); got "
                          f"a {type(model).__name__}")
    runner = CompiledSpeculativeGenerator(model, make_draft(model, config), config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compile_s = runner.warm_up(ctx)
    rounds = max(runner.stats["rounds"], 1)
    return Built(runner, ctx.settings.with_(batch_size=1),
                 {"decode": "compiled draft and verify steps over static caches", "draft": config.draft,
                  "draft_tokens": config.draft_tokens, "batch_size": 1, "compile_s": compile_s,
                  "warm_up_accepted_per_round": round(runner.stats["accepted"] / rounds, 2)})
