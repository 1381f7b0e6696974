"""Speculative decoding with a draft accelkit distils from the model itself, for users who have no
smaller model of the same tokenizer: the draft proposes, the model verifies (transformers'
assisted generation), so greedy output is the model's own.

The draft is the model cut after its first ``layers`` decoder layers (same width, same tokenizer
and vocabulary, its own copies of the embeddings, final norm and LM head), trained on the
workload's calibration prompts: sequence-level distillation on the model's own greedy
continuations (cross-entropy on the tokens it wrote) plus KL to its next-token distribution there,
bounded by ``max_steps`` and ``max_seconds``, keeping the weights that agree best with the model
on a held-out quarter of the calibration prompts (``details.acceptance_after``). Starting from the model's own first layers rather
than random weights lets a few hundred steps on a few thousand tokens reach a useful acceptance
rate. The trained draft is cached under $ACCELKIT_CACHE/distilled-drafts/, keyed by a fingerprint
of the model's weights, the prompts, the new-token count, the steps before this one and the
config, written atomically, so a second build loads it.

Buys: drafted tokens cost ``layers``/L of the model's decoder work; the trained draft agrees with
the model more often than its untrained first layers (``details.acceptance_before/after``).
Costs: the training (``details.train_s``, once per fingerprint); batch 1 only (transformers
verifies one sequence at a time); the draft's weights beside the model's (embeddings and head
included); with a few thousand calibration tokens the draft overfits within a few hundred steps,
which the held-out score stops; how often it agrees on other text is what bench measures.
Greedy output is the model's own wherever a token's logits do not depend on the other tokens of
its pass (fp32, bf16 casts up to rounding, weight-only int8/int4); after ``int8-dynamic``, whose
activation scales are computed per call over every token in it, the verify pass's logits differ
slightly from one-token decoding's, so near-ties can flip (bench's agreement with fp32 shows it).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from accelkit._atomic import atomic_write_bytes
from accelkit.config import Config
from accelkit.errors import ConfigError
from accelkit.techniques.registry import BuildContext, Built, register_technique
from accelkit.techniques.self_speculative import (
    _MAX_DRAFT_TOKENS,
    AUTO_DRAFT_TOKENS,
    _greedy_sequences,
    configure_draft,
    decoder_layers,
    draft_costs,
    early_exit_view,
    expected_speedup,
)
from accelkit.techniques.speculative import AssistedGeneration

__all__ = ["DistilledDraftConfig", "distil_draft"]

CACHE_FOLDER = "distilled-drafts"
EVAL_EVERY = 25  # steps between scores of the held-out calibration prompts
PATIENCE = 4  # scores without a gain before training stops
# the training procedure's version, in the cache key: a changed recipe must not load older drafts
RECIPE = 2


@dataclass
class DistilledDraftConfig(Config):
    """``layers``: the draft's decoder layers (capped at the model's less one); ``prompts``:
    calibration prompts distilled on; ``max_steps`` / ``max_seconds``: the training budget (the
    first reached stops it); ``lr``, ``batch_size``: the optimiser's; ``kl_weight``: the weight of
    KL to the model's distribution beside cross-entropy on its greedy tokens (0: sequence-level
    only); ``draft_tokens``: tokens drafted per verify pass (None: picked from the acceptance)."""

    layers: int = 2
    prompts: int = 64
    max_steps: int = 300
    max_seconds: float = 120.0
    lr: float = 5e-4
    batch_size: int = 8
    kl_weight: float = 1.0
    draft_tokens: int | None = None
    version: int = 1

    def __post_init__(self) -> None:
        for name, low, high in (("layers", 1, 4096), ("prompts", 1, 100_000), ("max_steps", 1, 1_000_000),
                                ("batch_size", 1, 4096)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"{name}={value!r}: expected a whole number from {low} to {high}")
        for name in ("max_seconds", "lr", "kl_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0 or (value == 0 and name != "kl_weight"):
                raise ConfigError(f"{name}={value!r}: expected a positive number" +
                                  (" (or 0 for no KL term)" if name == "kl_weight" else ""))
        if self.draft_tokens is not None and (isinstance(self.draft_tokens, bool) or not isinstance(
                self.draft_tokens, int) or not 1 <= self.draft_tokens <= _MAX_DRAFT_TOKENS):
            raise ConfigError(f"draft_tokens={self.draft_tokens!r}: expected 1 to {_MAX_DRAFT_TOKENS}, or null to pick it")


def _fingerprint(reference: nn.Module, ctx: BuildContext, config: DistilledDraftConfig, prompts: list[str],
                 teacher_dtype: torch.dtype) -> str:
    """What the trained draft depends on: the model's fp32 weights, the prompts, the new-token
    count, the steps before this one, the teacher's dtype and autocast, and the training config."""
    h = hashlib.sha256()
    for name, tensor in sorted(reference.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().contiguous().view(torch.uint8).numpy().tobytes())
    train = {k: v for k, v in config.to_dict().items() if k != "draft_tokens"}  # chosen after training
    h.update(json.dumps({"prompts": prompts, "max_new_tokens": ctx.workload.max_new_tokens,
                         "steps_before": list(ctx.steps_before), "teacher_dtype": str(teacher_dtype),
                         "autocast": ctx.settings.autocast, "config": train,
                         "class": type(reference).__name__, "recipe": RECIPE}, sort_keys=True).encode())
    return h.hexdigest()[:24]


def _teacher_data(model: nn.Module, ctx: BuildContext, prompts: int, batch_size: int) -> list[dict[str, torch.Tensor]]:
    """Per calibration batch: prompt + the model's greedy continuation, its mask and positions,
    the prompt length and the model's log-probabilities at the continuation's positions."""
    from accelkit.workloads.base import autocast_context
    from accelkit.workloads.generation import generate_tokens

    wl = ctx.workload
    out = []
    # no_grad, not inference_mode: the training step saves these tensors for its backward pass
    with torch.no_grad(), autocast_context(ctx.settings):
        for inputs in ctx.calib_batches(prompts, batch_size=batch_size):
            ids, mask = inputs["input_ids"], inputs["attention_mask"]
            new = generate_tokens(model, inputs, wl.max_new_tokens, wl.tokenizer.pad_token_id)
            seq = torch.cat([ids, new], dim=1)
            full = torch.cat([mask, torch.ones_like(new)], dim=1)
            positions = (full.cumsum(-1) - 1).clamp(min=0)
            start = ids.shape[1]
            logits = model(input_ids=seq, attention_mask=full, position_ids=positions,
                           use_cache=False).logits[:, start - 1:-1]
            out.append({"seq": seq, "mask": full, "positions": positions, "start": start,
                        "logp": logits.float().log_softmax(-1)})
    if not out:
        raise ConfigError("speculative-distilled distils on calibration prompts; the workload has none")
    return out


def _draft_logits(draft: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    out = draft(input_ids=batch["seq"], attention_mask=batch["mask"], position_ids=batch["positions"],
                use_cache=False)
    return out.logits[:, batch["start"] - 1:-1].float()


def _acceptance(draft: nn.Module, data: list[dict[str, Any]]) -> float:
    """The share of continuation positions where the draft's argmax is the model's greedy token."""
    same = total = 0
    with torch.inference_mode():
        for batch in data:
            target = batch["seq"][:, batch["start"]:]
            same += int((_draft_logits(draft, batch).argmax(-1) == target).sum())
            total += target.numel()
    return same / max(total, 1)


def distil_draft(draft: nn.Module, train: list[dict[str, Any]], val: list[dict[str, Any]],
                 config: DistilledDraftConfig) -> dict[str, Any]:
    """Train ``draft`` (in place) toward the model's continuations in ``train``, scoring the
    acceptance on ``val`` every ``EVAL_EVERY`` steps and at the end; ``draft`` ends with the
    weights of the best score (a few thousand tokens overfit fast: the held-out prompts say when).
    Returns what happened."""
    opt = torch.optim.AdamW(draft.parameters(), lr=config.lr, weight_decay=0.0)
    deadline = time.perf_counter() + config.max_seconds
    start = time.perf_counter()
    best = (_acceptance(draft, val), 0, copy.deepcopy(draft.state_dict()))
    before, losses, stale = best[0], [], 0
    draft.train()
    for step in range(1, config.max_steps + 1):
        batch = train[(step - 1) % len(train)]
        logp = _draft_logits(draft, batch).log_softmax(-1)
        target = batch["seq"][:, batch["start"]:]
        loss = nn.functional.nll_loss(logp.flatten(0, 1), target.flatten())
        if config.kl_weight:
            # KL(model ‖ draft) over the continuation's positions
            kl = (batch["logp"].exp() * (batch["logp"] - logp)).sum(-1).mean()
            loss = loss + config.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        last = step == config.max_steps or time.perf_counter() > deadline
        if step % EVAL_EVERY == 0 or last:
            draft.eval()
            score = _acceptance(draft, val)
            draft.train()
            if score > best[0]:
                best, stale = (score, step, copy.deepcopy(draft.state_dict())), 0
            else:
                stale += 1
        if last or stale >= PATIENCE:
            break
    draft.load_state_dict(best[2])
    draft.eval()
    return {"train_steps": len(losses), "best_step": best[1], "train_s": round(time.perf_counter() - start, 2),
            "loss_first": round(losses[0], 4), "loss_last": round(losses[-1], 4),
            "acceptance_before": round(before, 4), "acceptance_after": round(best[0], 4),
            "held_out_prompts": sum(len(b["seq"]) for b in val)}


def _save(path: Path, draft: nn.Module, found: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save({"state": draft.state_dict(), "found": found}, buf)
    atomic_write_bytes(path, buf.getvalue())


def _load(path: Path, draft: nn.Module) -> dict[str, Any] | None:
    """The cached draft's weights into ``draft`` and what its training found; None when the file
    is missing or unreadable (then it is trained again and rewritten)."""
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location=next(draft.parameters()).device, weights_only=True)
        draft.load_state_dict(saved["state"])
        return dict(saved["found"])
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, EOFError, pickle.UnpicklingError):
        return None


@register_technique("speculative-distilled", group="runtime", description="speculative decoding with a draft "
                    "accelkit distils from the model's first layers on the calibration prompts (cached; greedy "
                    "output unchanged; batch 1)", needs=("generate",), accepts=("eager", "eager-lowp", "quantized"),
                    produces="dynamic", objectives=("throughput", "latency"), expensive=True, saveable=False,
                    config=DistilledDraftConfig)
def _speculative_distilled(model: nn.Module, ctx: BuildContext, config: DistilledDraftConfig) -> Built:
    from accelkit.workloads.base import cache_dir

    _, _, layers = decoder_layers(model)
    if len(layers) < 2:
        raise ConfigError(f"speculative-distilled needs a model of at least 2 decoder layers; this one has "
                          f"{len(layers)}")
    n = min(config.layers, len(layers) - 1)
    # the draft starts from the fp32 model's own first layers (a precision step before this one
    # may have cast or packed ``model``'s); ``model`` is the teacher it learns to agree with
    reference = ctx.workload.build_model()
    draft = copy.deepcopy(early_exit_view(reference, n)).float().to(ctx.settings.device)
    teacher_dtype = model.get_input_embeddings().weight.dtype
    prompts = list(ctx.calib_data(config.prompts))
    path = cache_dir() / CACHE_FOLDER / f"{_fingerprint(reference, ctx, config, prompts, teacher_dtype)}.pt"
    del reference
    found = _load(path, draft)
    cached = found is not None
    if found is None:
        data = _teacher_data(model, ctx, config.prompts, config.batch_size)
        # the last quarter of the calibration batches (at least one) is held out to score acceptance
        n_val = max(1, len(data) // 4) if len(data) > 1 else 0
        train, val = (data[:-n_val], data[-n_val:]) if n_val else (data, data)
        found = distil_draft(draft, train, val, config)
        _save(path, draft, found)
    for p in draft.parameters():
        p.requires_grad_(False)
    if teacher_dtype in (torch.bfloat16, torch.float16):
        draft = draft.to(teacher_dtype)
    probe = _greedy_sequences(model, ctx, 1)
    costs, overhead = draft_costs(model, probe, [n], draft=draft)
    cost = costs[n]
    tokens = config.draft_tokens or max(range(1, AUTO_DRAFT_TOKENS + 1),
                                        key=lambda g: expected_speedup(found["acceptance_after"], cost, g, overhead))
    configure_draft(draft, tokens)
    applied = DistilledDraftConfig(**{**config.to_dict(), "draft_tokens": tokens})
    details = {"draft_layers": n, "layers": len(layers), "draft_params": sum(p.numel() for p in draft.parameters()),
               "draft_tokens": tokens, "batch_size": 1, "cached": cached, "cache_file": path.name,
               "draft_cost": round(cost, 3), "draft_call_overhead": round(overhead, 3),
               "expected_speedup": round(expected_speedup(found["acceptance_after"], cost, tokens, overhead), 3), **found}
    return Built(AssistedGeneration(model, draft), ctx.settings.with_(batch_size=1), details,
                 config=applied.to_dict())
