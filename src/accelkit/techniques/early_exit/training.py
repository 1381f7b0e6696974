"""Training the exit heads: ``train_exit_heads_`` picks the regime; ``distill`` (backbone frozen,
heads learn the model's own final output) lives here, the others in their own modules."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from accelkit._threads import thread_count
from accelkit.errors import ConfigError
from accelkit.tasks.pooling import mean_pool
from accelkit.techniques._blocks import _as_call, _first
from accelkit.techniques.early_exit._backbone_training import _train_joint, _train_staged_embedding
from accelkit.techniques.early_exit._criteria import _agreement
from accelkit.techniques.early_exit._ridge import _fit_embedding_heads_ridge
from accelkit.techniques.early_exit.model import EarlyExitModel

__all__ = ["train_exit_heads_"]


def _shifted(x: torch.Tensor) -> list[torch.Tensor]:
    return [torch.roll(x, shifts=s, dims=(2, 3)) for s in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))]


def _pooled_features(model: EarlyExitModel, batches: Iterable[Any], augment: bool) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Pooled head inputs (per head) and the final outputs, backbone frozen."""
    feats: list[list[torch.Tensor]] = [[] for _ in model.heads]
    finals: list[torch.Tensor] = []
    head_at = {b: k for k, b in enumerate(model.exit_after)}
    for inputs in batches:
        variants = _shifted(inputs) if augment and isinstance(inputs, torch.Tensor) and inputs.dim() == 4 else [inputs]
        for inp in variants:
            x, rest, block_kwargs, mask = model._block_inputs(*_as_call(inp))
            for i, block in enumerate(model.blocks):
                x = _first(block(x, *rest, **block_kwargs))
                if i in head_at:
                    feats[head_at[i]].append(model.heads[head_at[i]].pool(x, mask))
            final = model._finals(x)
            if model.mode == "embedding" and final.dim() == 3:
                final = mean_pool(final, mask)
            finals.append(final)
    return [torch.cat(f) for f in feats], torch.cat(finals)


def train_exit_heads_(
    model: EarlyExitModel,
    batches: Iterable[Any],
    *,
    labels: torch.Tensor | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train the exit heads in place; returns per-head training agreement/cosine.

    ``distill`` (default): the backbone stays frozen and each head learns the model's own
    final output (soft targets at ``temperature`` for logits, cosine for embeddings), so the
    full-depth output is unchanged. ``joint``: backbone and heads learn together — a classifier
    learns ``labels`` (cross-entropy summed over the heads and the final output), an embedding
    model learns its own untouched pooled embedding at every exit (self-distillation).
    """
    cfg = model.config
    torch.manual_seed(cfg.seed)
    batches = list(batches)
    if cfg.training == "joint":
        return _train_joint(model, batches, labels, progress)
    if cfg.training == "staged":
        if model.mode != "embedding":
            raise ConfigError("training='staged' is for embedding models; use 'joint' or 'distill' for a classifier")
        return _train_staged_embedding(model, batches, progress)
    model.eval()
    if model.mode == "embedding" and cfg.head_hidden == 0:
        return _fit_embedding_heads_ridge(model, batches, progress)
    with torch.no_grad():
        feats, teacher = _pooled_features(model, batches, cfg.shift_augment)
    report: dict[str, Any] = {"heads": []}
    for k, head in enumerate(model.heads):
        f = feats[k].float()
        opt = torch.optim.AdamW(head.proj.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        head.train()
        # tiny matmuls: one thread avoids OpenMP barrier stalls on a busy machine
        with torch.enable_grad(), thread_count(1):
            for _ in range(cfg.epochs):
                out = head.proj(f)
                loss = _distill_loss(model.mode, out, teacher, cfg.temperature)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        head.eval()
        with torch.no_grad():
            out = head.proj(f)
            fit = _agreement(model.mode, out, teacher)
        report["heads"].append({"after_block": model.exit_after[k], "train_fit": fit})
        if progress:
            progress(f"head after block {model.exit_after[k]}: train fit {fit:.4f}")
    return report


def _distill_loss(mode: str, out: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    if mode == "embedding":
        return (1 - nn.functional.cosine_similarity(out, teacher, dim=-1)).mean()
    t = temperature
    out, teacher = out.flatten(0, -2), teacher.flatten(0, -2)  # per-token logits → rows
    soft = nn.functional.kl_div(
        (out / t).log_softmax(-1), (teacher / t).softmax(-1), reduction="batchmean"
    ) * (t * t)
    return soft + nn.functional.cross_entropy(out, teacher.argmax(-1))
