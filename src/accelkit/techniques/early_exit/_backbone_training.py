"""The training regimes that move the backbone too: ``joint`` (classifier: labels at every exit;
embeddings: self-distillation) and ``staged`` (prefix to the anchor exit first, then the rest)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from accelkit.errors import ConfigError
from accelkit.techniques._blocks import _as_call, _call, _first
from accelkit.techniques.early_exit._ridge import _fit_ridge_heads_on_subset
from accelkit.techniques.early_exit.config import EarlyExitConfig
from accelkit.techniques.early_exit.model import EarlyExitModel
from accelkit.train.schedule import warmup_cosine_factor


def _train_joint(
    model: EarlyExitModel, batches: list[Any], labels: torch.Tensor | None, progress: Callable | None
) -> dict[str, Any]:
    if model.mode == "embedding":
        return _train_joint_embedding(model, batches, progress)
    if labels is None:
        raise ConfigError("training='joint' on a classifier needs labels for the batches; use training='distill'")
    cfg = model.config
    lr, n_epochs = _joint_lr_and_epochs(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    model.train()
    with torch.enable_grad():
        for epoch in range(n_epochs):
            start = 0
            for inputs in batches:
                y = labels[start : start + len(inputs)]
                start += len(inputs)
                outs, final = _call(model.all_exits, inputs)
                loss = nn.functional.cross_entropy(final, y) + sum(nn.functional.cross_entropy(o, y) for o in outs)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if progress:
                progress(f"joint epoch {epoch + 1}/{n_epochs}: loss {loss.item():.4f}")
    model.eval()
    return {"heads": [], "joint_epochs": n_epochs}


def _joint_lr_and_epochs(cfg: EarlyExitConfig) -> tuple[float, int]:
    """Backbone learning rate and passes for ``joint``/``staged`` training (derived when not set)."""
    lr = cfg.joint_lr if cfg.joint_lr is not None else cfg.lr * 0.1
    return lr, cfg.joint_epochs or max(1, cfg.epochs // 30)


def _untouched_embeddings(model: EarlyExitModel, batches: list[Any]) -> list[torch.Tensor]:
    """The model's pooled final embedding per batch, taken before any backbone weight moves."""
    model.eval()
    with torch.no_grad():
        return [_call(model.all_exits, b)[1].detach() for b in batches]


def _train_joint_embedding(model: EarlyExitModel, batches: list[Any], progress: Callable | None) -> dict[str, Any]:
    """Self-distillation with the backbone unfrozen: every exit and the final output learn the
    *untouched* model's pooled embedding (computed before any weight moves).

    A frozen backbone leaves a linear head on layer k only what layer k already encodes
    (cosine 0.7–0.8 on MiniLM's middle layers); letting the layers below an exit adapt makes
    the early exits useful at the price of a small drift of the full-depth output, which
    calibration then measures against the untouched reference.
    """
    targets = _untouched_embeddings(model, batches)
    ridge = _fit_ridge_heads_on_subset(model, batches, progress)  # a good start for the heads

    def every_output(inputs: Any) -> list[torch.Tensor]:
        outs, final = _call(model.all_exits, inputs)
        return [final, *outs]

    losses = _fit_cosine(model, batches, targets, list(model.parameters()), every_output, "joint", progress)
    lr, n_epochs = _joint_lr_and_epochs(model.config)
    return {"heads": ridge["heads"], "fit": "ridge, then joint self-distillation", "joint_epochs": n_epochs,
            "joint_lr": lr, "epoch_losses": losses}


def _trainable_only(model: EarlyExitModel, params: list[nn.Parameter]) -> None:
    keep = {id(p) for p in params}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)


def _fit_cosine(
    model: EarlyExitModel,
    batches: list[Any],
    targets: list[torch.Tensor],
    params: list[nn.Parameter],
    output: Callable[[Any], torch.Tensor | list[torch.Tensor]],
    label: str,
    progress: Callable | None,
) -> list[float]:
    """Train ``params`` (only those) so that ``output(batch)`` — one tensor, or several whose
    losses add up — matches ``targets`` in cosine, with warm-up and a cosine schedule; the
    model stays in eval mode (no dropout). Returns the mean loss of each epoch."""
    cfg = model.config
    lr, n_epochs = _joint_lr_and_epochs(cfg)
    model.eval()
    _trainable_only(model, params)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    total = n_epochs * len(batches)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine_factor(s, total))
    gen = torch.Generator().manual_seed(cfg.seed)
    losses: list[float] = []
    try:
        with torch.enable_grad():
            for epoch in range(n_epochs):
                running = 0.0
                for j in torch.randperm(len(batches), generator=gen).tolist():
                    outs = output(batches[j])
                    loss = sum(
                        (1 - nn.functional.cosine_similarity(o, targets[j], dim=-1)).mean()
                        for o in (outs if isinstance(outs, list) else [outs])
                    )
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    running += loss.item()
                losses.append(running / max(1, len(batches)))
                if progress:
                    progress(f"{label} epoch {epoch + 1}/{n_epochs}: mean 1 - cosine {losses[-1]:.4f}")
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    return losses


def _train_staged_embedding(model: EarlyExitModel, batches: list[Any], progress: Callable | None) -> dict[str, Any]:
    """Two stages, both learning the *untouched* model's pooled embedding (computed first).

    1. The layers up to the anchor exit (and that exit's head) learn it: the prefix becomes a
       shallow student whose exit is good on its own (a frozen prefix gives a linear head on
       MiniLM's 4th layer only cosine ~0.73).
    2. The prefix is frozen and the layers after it learn it from the new prefix's output, so
       rows that run to full depth stay close to the untouched model.
    The other heads are then fitted by ridge on the final backbone. Unlike ``joint``, no single
    set of weights has to serve every exit at once.
    """
    targets = _untouched_embeddings(model, batches)
    anchor_block = model.config.anchor_exit if model.config.anchor_exit is not None else model.exit_after[-1]
    anchor = model.exit_after.index(anchor_block)
    later = {id(p) for i, block in enumerate(model.blocks) if i > anchor_block for p in block.parameters()}
    later |= {id(p) for name in model.final_names for p in model.backbone.get_submodule(name).parameters()}
    prefix = [p for p in model.backbone.parameters() if id(p) not in later]
    suffix = [p for p in model.backbone.parameters() if id(p) in later]

    def anchor_output(inputs: Any) -> torch.Tensor:
        x, mask = _run_blocks(model, inputs, anchor_block)
        return model.heads[anchor](x, mask)

    def final_output(inputs: Any) -> torch.Tensor:
        return _call(model.all_exits, inputs)[1]

    stage1 = _fit_cosine(model, batches, targets, prefix + list(model.heads[anchor].parameters()),
                         anchor_output, f"stage 1 (layers ≤ {anchor_block})", progress)
    stage2 = _fit_cosine(model, batches, targets, suffix, final_output,
                         f"stage 2 (layers > {anchor_block})", progress)
    kept = {k: v.clone() for k, v in model.heads[anchor].state_dict().items()}
    ridge = _fit_ridge_heads_on_subset(model, batches, progress)
    model.heads[anchor].load_state_dict(kept)
    model.eval()
    return {"heads": [h for k, h in enumerate(ridge["heads"]) if k != anchor], "fit": "staged",
            "anchor_exit": anchor_block, "stage1_losses": stage1, "stage2_losses": stage2}


def _run_blocks(model: EarlyExitModel, inputs: Any, last: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Hidden states after block ``last`` (and the attention mask), every row, no exits."""
    x, rest, block_kwargs, mask = model._block_inputs(*_as_call(inputs))
    for block in model.blocks[: last + 1]:
        x = _first(block(x, *rest, **block_kwargs))
    return x, mask
