"""Closed-form exit heads for embedding models: a ridge regression from a layer's token states to
the final ones, its strength chosen on held-out batches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from accelkit.tasks.pooling import mean_pool
from accelkit.techniques._blocks import _as_call, _first
from accelkit.techniques.early_exit.model import EarlyExitModel


def _fit_embedding_heads_ridge(
    model: EarlyExitModel, batches: list[Any], progress: Callable[[str], None] | None
) -> dict[str, Any]:
    """Least-squares heads for embedding models, fitted per token, ridge strength chosen on held-out rows.

    A linear map commutes with the mean pool, so fitting hidden(layer k) → hidden(final) on
    every token (thousands of rows) and applying it to the pooled vector predicts the pooled
    embedding — far less overfit than fitting a D×D map on a few hundred pooled rows.
    """
    n_heads = len(model.heads)
    n_select = max(1, len(batches) // 5)  # the last fifth of the batches picks the ridge strength
    gram = [[None, None] for _ in range(n_heads)]  # per head: [fit part, select part] of (XᵀX, XᵀY)
    pooled: list[list[torch.Tensor]] = [[] for _ in range(n_heads)]
    pooled_final: list[torch.Tensor] = []
    head_at = {b: k for k, b in enumerate(model.exit_after)}
    with torch.no_grad():
        for j, inputs in enumerate(batches):
            part = 1 if j >= len(batches) - n_select else 0
            x, rest, block_kwargs, mask = model._block_inputs(*_as_call(inputs))
            hidden: dict[int, torch.Tensor] = {}
            for i, block in enumerate(model.blocks):
                x = _first(block(x, *rest, **block_kwargs))
                if i in head_at:
                    hidden[head_at[i]] = x
            final = model._finals(x)
            keep = mask.bool() if mask is not None else torch.ones(final.shape[:2], dtype=torch.bool)
            y = final[keep].double()  # (tokens, D)
            for k, h in hidden.items():
                xt = torch.cat([h[keep].double(), torch.ones(y.shape[0], 1, dtype=torch.float64)], 1)
                xtx, xty = xt.T @ xt, xt.T @ y
                g = gram[k][part]
                gram[k][part] = (xtx, xty) if g is None else (g[0] + xtx, g[1] + xty)
                if part == 1:
                    pooled[k].append(mean_pool(h, mask).double())
            if part == 1:
                pooled_final.append(mean_pool(final, mask).double())
    target = torch.cat(pooled_final)
    report: dict[str, Any] = {"heads": [], "fit": "ridge per token"}
    for k, head in enumerate(model.heads):
        (fit_xtx, fit_xty), (sel_xtx, sel_xty) = gram[k]
        feats = torch.cat(pooled[k])
        feats1 = torch.cat([feats, torch.ones(len(feats), 1, dtype=torch.float64)], 1)
        scale = float(torch.diagonal(fit_xtx).mean())
        best = (-2.0, 0.0)
        for lam in (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0):
            w = _ridge(fit_xtx, fit_xty, lam * scale)
            cos = float(nn.functional.cosine_similarity(feats1 @ w, target, dim=-1).mean())
            best = max(best, (cos, lam))
        w = _ridge(fit_xtx + sel_xtx, fit_xty + sel_xty, best[1] * scale)
        with torch.no_grad():
            head.proj.weight.copy_(w[:-1].T.float())
            head.proj.bias.copy_(w[-1].float())
        report["heads"].append({"after_block": model.exit_after[k], "heldout_cosine": best[0], "ridge": best[1]})
        if progress:
            progress(f"head after block {model.exit_after[k]}: held-out cosine {best[0]:.4f}")
    return report


def _ridge(xtx: torch.Tensor, xty: torch.Tensor, lam: float) -> torch.Tensor:
    eye = torch.eye(xtx.shape[0], dtype=xtx.dtype)
    eye[-1, -1] = 0  # no penalty on the bias
    return torch.linalg.solve(xtx + lam * eye, xty)


def _fit_ridge_heads_on_subset(
    model: EarlyExitModel, batches: list[Any], progress: Callable | None
) -> dict[str, Any]:
    # a spread subset of at most ~96 batches is plenty for a 385×D least-squares fit
    return _fit_embedding_heads_ridge(model, batches[:: max(1, len(batches) // 96)], progress)
