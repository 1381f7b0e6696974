"""Early-exit self-speculation (LayerSkip-style): the model's own first k decoder layers, its final
norm and LM head draft tokens; all layers verify them in one pass (transformers' assisted
generation), so greedy output is the model's own.

The draft is a view of the model that shares every weight: a shallow copy whose base model holds
only the first k layers and whose config says k layers. No memory is added, and it composes with
precision steps applied before it (the view drafts in whatever precision the model now has).
transformers' native ``generate(assistant_early_exit=k)`` is not used: it lowers
``config.num_hidden_layers`` while drafting, which only models that slice their layers by it
honour (Llama, Qwen2 do; GPT-2 runs every block of ``transformer.h`` regardless).

Buys: fewer layers per drafted token; the draft needs no training and no second model.
Costs: a model not trained to exit early (no LayerSkip training) has first-k-layer predictions
that often disagree with its last layer, so the acceptance rate, and with it the speed-up, depends
on the model; batch 1 only (transformers verifies one sequence at a time); the draft keeps its
own key/value cache for its k layers (LayerSkip shares it with the verifier; transformers does not).
Greedy output is the model's own wherever a token's logits do not depend on the other tokens of
its pass (fp32, bf16 casts up to rounding, weight-only int8/int4); after ``int8-dynamic``, whose
activation scales are computed per call over every token in it, the verify pass's logits differ
slightly from one-token decoding's, so near-ties can flip (bench's agreement with fp32 shows it).

k and the number of tokens drafted per round are picked on a few calibration prompts: the model's
greedy continuations are scored teacher-forced under every k (the share of positions where the
k-layer draft's argmax is the model's next token: the acceptance rate), and a cost model (a
drafted token's time as a share of a full step, timed on one prompt for k = 1 and all layers,
linear in k between; plus the draft's ``generate`` setup, paid once per round) gives the expected
tokens per unit of full-model time; the best (k, tokens) wins (``details``). The expected figure
ignores that verifying several tokens costs more than one step and the verify loop's own Python:
it is an upper bound, and bench measures the truth.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from accelkit.config import Config
from accelkit.errors import ConfigError
from accelkit.techniques.registry import BuildContext, Built, register_technique
from accelkit.techniques.speculative import AssistedGeneration

__all__ = ["SelfSpeculativeConfig", "decoder_layers", "early_exit_view", "expected_speedup", "teacher_forced_agreement"]

# where transformers' causal LMs keep their decoder layers, under the base model
_LAYER_LISTS = ("layers", "h", "blocks", "decoder.layers")
_MAX_DRAFT_TOKENS = 16
# the most tokens drafted per round when picked: the acceptance estimate is optimistic (teacher
# forced, independent positions), and a long rejected run costs the most
AUTO_DRAFT_TOKENS = 8


@dataclass
class SelfSpeculativeConfig(Config):
    """``exit_layer``: draft with the first this many layers (None: picked on calibration prompts);
    ``draft_tokens``: tokens drafted per verify pass (None: picked with k); ``probe_prompts``:
    calibration prompts the pick scores."""

    exit_layer: int | None = None
    draft_tokens: int | None = None
    probe_prompts: int = 4
    version: int = 1

    def __post_init__(self) -> None:
        for name, top in (("exit_layer", 4096), ("draft_tokens", _MAX_DRAFT_TOKENS)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top):
                raise ConfigError(f"{name}={value!r}: expected a whole number from 1 to {top}, or null to pick it")
        if isinstance(self.probe_prompts, bool) or not isinstance(self.probe_prompts, int) \
                or not 1 <= self.probe_prompts <= 64:
            raise ConfigError(f"probe_prompts={self.probe_prompts!r}: expected 1 to 64 calibration prompts")


def decoder_layers(model: nn.Module) -> tuple[nn.Module, str, nn.ModuleList]:
    """(base model, attribute path, layer list) of a transformers causal LM; ConfigError naming
    what was looked for when the model has no such list of ``config.num_hidden_layers`` layers."""
    config = getattr(model, "config", None)
    base = getattr(model, getattr(model, "base_model_prefix", "") or "model", None)
    n = getattr(config, "num_hidden_layers", None)
    if isinstance(base, nn.Module) and isinstance(n, int):
        for path in _LAYER_LISTS:
            try:
                layers = base.get_submodule(path)
            except AttributeError:
                continue
            if isinstance(layers, nn.ModuleList) and len(layers) == n:
                return base, path, layers
    raise ConfigError(f"self-speculative drafts with a transformers causal LM's first layers; this "
                      f"{type(model).__name__} has no base model with a list of config.num_hidden_layers decoder "
                      f"layers (looked for {', '.join(_LAYER_LISTS)}); use speculative with --draft instead")


def _shallow(module: nn.Module) -> nn.Module:
    """A new module object sharing ``module``'s parameters, buffers and children, whose children
    can be replaced without touching ``module``."""
    clone = copy.copy(module)
    clone._modules = dict(module._modules)
    return clone


def early_exit_view(model: nn.Module, k: int) -> nn.Module:
    """``model`` cut after its first ``k`` decoder layers (its own final norm and LM head after
    them), sharing every weight with ``model``; its own config and generation config."""
    base, path, layers = decoder_layers(model)
    if not 1 <= k < len(layers):
        raise ConfigError(f"exit_layer={k}: the model has {len(layers)} decoder layers; pick 1 to {len(layers) - 1}")
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = k
    if isinstance(getattr(config, "layer_types", None), list):  # Qwen2 & co: one attention kind per layer
        config.layer_types = config.layer_types[:k]
    view = _shallow(model)
    new_base = _shallow(base)
    parent_path, _, leaf = path.rpartition(".")
    parent = new_base
    if parent_path:  # e.g. decoder.layers: copy the intermediate module too
        parent = _shallow(base.get_submodule(parent_path))
        setattr(new_base, parent_path, parent)
    setattr(parent, leaf, nn.ModuleList(list(layers)[:k]))
    for mod in {view, new_base, parent}:
        if hasattr(mod, "config"):
            mod.config = config
    setattr(view, model.base_model_prefix, new_base)
    if getattr(model, "generation_config", None) is not None:
        # assisted generation tunes the assistant's generation config between calls: the model's stays its own
        view.generation_config = copy.deepcopy(model.generation_config)
    return view


def _greedy_sequences(model: nn.Module, ctx: BuildContext, n: int) -> list[tuple[torch.Tensor, int]]:
    """(prompt + the model's greedy continuation, prompt length) for ``n`` calibration prompts, batch 1."""
    from accelkit.workloads.generation import generate_tokens

    wl = ctx.workload
    out = []
    with torch.inference_mode():
        for inputs in ctx.calib_batches(n, batch_size=1):
            new = generate_tokens(model, inputs, wl.max_new_tokens, wl.tokenizer.pad_token_id)
            out.append((torch.cat([inputs["input_ids"], new], dim=1), inputs["input_ids"].shape[1]))
    if not out:
        raise ConfigError("self-speculative picks its exit layer on calibration prompts; the workload has none")
    return out


def teacher_forced_agreement(draft: nn.Module, sequences: list[tuple[torch.Tensor, int]]) -> float:
    """The share of continuation positions where ``draft``'s argmax is the next token of the
    sequence (the model's own greedy token): the acceptance rate of one drafted token."""
    same = total = 0
    with torch.inference_mode():
        for seq, prompt in sequences:
            logits = draft(input_ids=seq, use_cache=False).logits[0, prompt - 1:-1]
            same += int((logits.argmax(-1) == seq[0, prompt:]).sum())
            total += seq.shape[1] - prompt
    return same / max(total, 1)


def expected_speedup(p: float, cost: float, tokens: int, overhead: float = 0.0) -> float:
    """Tokens written per unit of full-model work when ``tokens`` are drafted per round, each
    accepted with probability ``p`` (independently), a drafted token costing ``cost`` of a
    full-model step, the draft's call ``overhead`` per round and the verify pass one step:
    (1 − p^(γ+1)) / (1 − p) / (γ·cost + overhead + 1)."""
    written = tokens + 1 if p >= 1.0 else (1 - p ** (tokens + 1)) / (1 - p)
    return written / (tokens * cost + overhead + 1)


def decode_seconds(models: list[nn.Module], sequences: list[tuple[torch.Tensor, int]], tokens: int = 8,
                   repeats: int = 5) -> list[tuple[float, float]]:
    """(seconds per new token, seconds per ``generate`` call beyond its tokens) of each model's
    own greedy ``generate`` after the first probe prompt, from the fastest of ``repeats`` runs
    writing 1 and ``tokens`` + 1 tokens; the models and lengths take turns within a round (one
    untimed round first), so load from elsewhere on the machine falls on all of them alike."""
    import time

    seq, prompt = sequences[0]
    ids = seq[:, :prompt]
    best = [[float("inf"), float("inf")] for _ in models]
    with torch.inference_mode():
        for r in range(repeats + 1):
            for i, model in enumerate(models):
                for j, n in enumerate((1, tokens + 1)):
                    start = time.perf_counter()
                    model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                                   do_sample=False, num_beams=1, eos_token_id=None,
                                   pad_token_id=getattr(model.config, "pad_token_id", None) or 0)
                    if r:
                        best[i][j] = min(best[i][j], time.perf_counter() - start)
    out = []
    for one, many in best:
        per_token = max(many - one, 1e-9) / tokens
        out.append((per_token, max(one - per_token, 0.0)))
    return out


def draft_costs(model: nn.Module, sequences: list[tuple[torch.Tensor, int]], ks: list[int],
                draft: nn.Module | None = None) -> tuple[dict[int, float], float]:
    """Per drafted token, the cost of a k-layer draft as a share of a full-model step, for each
    of ``ks``, and the draft's per-round call overhead (``generate``'s setup: transformers'
    assisted generation calls it once per round) in full steps: measured where it is cheap to
    (the full model beside ``draft`` or the 1-layer view) and linear in k between them, since on a
    small model per-step work that no layer count changes (Python, kernel launches, the LM head)
    is much of a step and parameter counts miss it."""
    (full, _), (own, call) = decode_seconds([model, draft if draft is not None else early_exit_view(model, 1)],
                                            sequences)
    one = min(own / full, 1.0)
    if draft is not None:
        return {k: one for k in ks}, call / full
    n = len(decoder_layers(model)[2])
    return {k: one + (1.0 - one) * (k - 1) / (n - 1) for k in ks}, call / full


def pick_exit(model: nn.Module, ctx: BuildContext, config: SelfSpeculativeConfig) -> tuple[int, int, dict[str, Any]]:
    """(exit layer, draft tokens, what the probe found) for ``config``'s unset fields."""
    _, _, layers = decoder_layers(model)
    if len(layers) < 2:
        raise ConfigError(f"self-speculative needs a model of at least 2 decoder layers; this one has {len(layers)}")
    candidates = [config.exit_layer] if config.exit_layer is not None else list(range(1, len(layers)))
    sequences = _greedy_sequences(model, ctx, config.probe_prompts)
    tokens_range = [config.draft_tokens] if config.draft_tokens is not None else range(1, AUTO_DRAFT_TOKENS + 1)
    acceptance, best = {}, None
    costs, overhead = draft_costs(model, sequences, candidates)
    for k in candidates:
        p = acceptance[k] = teacher_forced_agreement(early_exit_view(model, k), sequences)
        cost = costs[k]
        for g in tokens_range:
            score = expected_speedup(p, cost, g, overhead)
            if best is None or score > best[0]:
                best = (score, k, g)
    score, k, g = best
    return k, g, {"acceptance_by_exit_layer": {str(i): round(a, 4) for i, a in acceptance.items()},
                  "acceptance_rate": round(acceptance[k], 4), "expected_speedup": round(score, 3),
                  "draft_cost": round(costs[k], 3), "draft_call_overhead": round(overhead, 3),
                  "probe_prompts": len(sequences)}


def configure_draft(draft: nn.Module, tokens: int) -> None:
    """Draft ``tokens`` per verify pass, always (transformers' default adapts the count between calls)."""
    draft.generation_config.num_assistant_tokens = tokens
    draft.generation_config.num_assistant_tokens_schedule = "constant"


@register_technique("self-speculative", group="runtime", description="early-exit self-speculation: the model's "
                    "first k layers draft, all layers verify (greedy output unchanged; batch 1; k picked on "
                    "calibration prompts)", needs=("generate",), accepts=("eager", "eager-lowp", "quantized"),
                    produces="dynamic", objectives=("throughput", "latency"), saveable=False,
                    config=SelfSpeculativeConfig)
def _self_speculative(model: nn.Module, ctx: BuildContext, config: SelfSpeculativeConfig) -> Built:
    decoder_layers(model)  # the clear error first, before any probing
    k, tokens, found = pick_exit(model, ctx, config)
    draft = early_exit_view(model, k)
    configure_draft(draft, tokens)
    n_layers = len(decoder_layers(model)[2])
    applied = SelfSpeculativeConfig(exit_layer=k, draft_tokens=tokens, probe_prompts=config.probe_prompts)
    # transformers' assisted generation verifies one sequence at a time
    return Built(AssistedGeneration(model, draft), ctx.settings.with_(batch_size=1),
                 {"exit_layer": k, "layers": n_layers, "draft_tokens": tokens, "batch_size": 1, **found},
                 config=applied.to_dict())
