"""Threshold calibration: simulate every candidate threshold set on held-out outputs and keep the
one that saves the most compute within the quality budget (``calibrate_thresholds``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from accelkit.errors import ConfigError
from accelkit.techniques._blocks import _call, _first
from accelkit.techniques.early_exit._criteria import (
    _row_confidence,
    _row_entropy,
    _row_quality,
    _same_prediction,
)
from accelkit.techniques.early_exit.model import EarlyExitModel

__all__ = ["CalibrationResult", "block_costs", "calibrate_thresholds", "collect_exit_outputs"]


@dataclass
class CalibrationResult:
    """Chosen thresholds, what they buy on the calibration data, and the whole curve."""

    thresholds: list[float | None]
    met_budget: bool
    compute_saved: float
    layers_saved: float
    quality: float
    quality_metric: str
    budget: float
    curve: list[dict[str, float]] = field(default_factory=list)
    message: str = ""
    costs: dict[str, Any] = field(default_factory=dict)  # FLOPs per row: blocks, heads, finals

    def to_dict(self) -> dict:
        return asdict(self)


def collect_exit_outputs(model: EarlyExitModel, batches: Iterable[Any]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Every head's output and the final output over ``batches`` (no exits)."""
    outs: list[list[torch.Tensor]] = [[] for _ in model.heads]
    finals: list[torch.Tensor] = []
    with torch.inference_mode():
        for inputs in batches:
            o, f = _call(model.all_exits, inputs)
            for k, t in enumerate(o):
                outs[k].append(t.float())
            finals.append(f.float())
    return [torch.cat(o) for o in outs], torch.cat(finals)


def block_costs(model: EarlyExitModel, example_inputs: Any) -> tuple[list[float], list[float], float]:
    """FLOPs per row of each block, of each exit head, and of the final modules."""
    from torch.utils.flop_counter import FlopCounterMode

    block_flops = [0.0] * len(model.block_names)
    head_flops = [0.0] * len(model.heads)
    current: dict[str, Any] = {}
    head_at = {b: k for k, b in enumerate(model.exit_after)}
    with torch.inference_mode():
        block_args, block_kwargs = _call(lambda *a, **k: model._capture(a, k), example_inputs)
        x, rest = block_args[0], tuple(block_args[1:])
        rows = x.shape[0]
        mask = example_inputs.get("attention_mask") if isinstance(example_inputs, dict) else None
        for i, block in enumerate(model.blocks):
            with FlopCounterMode(display=False) as counter:
                x = _first(block(x, *rest, **block_kwargs))
            block_flops[i] = counter.get_total_flops() / rows
            if i in head_at:
                with FlopCounterMode(display=False) as counter:
                    model.heads[head_at[i]](x, mask)
                head_flops[head_at[i]] = counter.get_total_flops() / rows
        with FlopCounterMode(display=False) as counter:
            model._finals(x)
        current["final"] = counter.get_total_flops() / rows
    return block_flops, head_flops, current["final"]


def _scores(criterion: str, outs: list[torch.Tensor]) -> list[torch.Tensor | None]:
    """Per head, per row: the value compared to that head's threshold (higher = exit sooner)."""
    scores: list[torch.Tensor | None] = []
    for k, o in enumerate(outs):
        if criterion == "confidence":
            scores.append(_row_confidence(o))
        elif criterion == "entropy":
            scores.append(-_row_entropy(o))  # exit when entropy ≤ thr ⇔ -entropy ≥ -thr
        elif criterion == "stability":
            scores.append(None if k == 0 else nn.functional.cosine_similarity(o, outs[k - 1], dim=-1))
        else:
            scores.append(None)
    return scores


def _simulate(
    model: EarlyExitModel,
    outs: list[torch.Tensor],
    final: torch.Tensor,
    scores: list[torch.Tensor | None],
    thresholds: list[float | None],
    costs: tuple[list[float], list[float], float],
    row_quality: list[torch.Tensor],
    full_quality: torch.Tensor,
) -> tuple[float, float, float, torch.Tensor]:
    """(quality, compute_saved, layers_saved, exit_block per row) for ``thresholds``."""
    n = final.shape[0]
    n_blocks = len(model.block_names)
    exit_head = torch.full((n,), -1, dtype=torch.long)
    crit = model.config.criterion
    if crit == "patience":
        count = torch.zeros(n, dtype=torch.long)
        for k, o in enumerate(outs):
            if k > 0:
                same = _same_prediction(o, outs[k - 1])
                count = torch.where(same, count + 1, torch.zeros_like(count))
            if thresholds[k] is not None:
                leave = (count >= model.patience) & (exit_head < 0)
                exit_head[leave] = k
    else:
        sign = -1.0 if crit == "entropy" else 1.0
        for k, s in enumerate(scores):
            if s is None or thresholds[k] is None:
                continue
            leave = (s >= sign * thresholds[k]) & (exit_head < 0)
            exit_head[leave] = k
    # quality per row is precomputed per head: gather the exit head's value, full_quality otherwise
    per_row = full_quality.clone()
    for k, rq in enumerate(row_quality):
        sel = exit_head == k
        per_row[sel] = rq[sel]
    quality = float(per_row.mean())
    block_flops, head_flops, final_flops = costs
    baseline = sum(block_flops) + final_flops
    needed = _needed_for(model, thresholds)
    exit_block = torch.tensor([model.exit_after[k] if k >= 0 else n_blocks - 1 for k in exit_head.tolist()])
    # cost of a row = blocks up to its exit + every needed head it passed + finals if it stayed
    cum_block = torch.tensor(block_flops).cumsum(0)
    head_cost_upto = torch.zeros(n_blocks)
    for k, b in enumerate(model.exit_after):
        if needed[k]:
            head_cost_upto[b:] += head_flops[k]
    row_cost = cum_block[exit_block] + head_cost_upto[exit_block] + (exit_head < 0).float() * final_flops
    compute_saved = 1.0 - float(row_cost.mean()) / baseline if baseline else 0.0
    layers_saved = 1.0 - float((exit_block + 1).float().mean()) / n_blocks
    return quality, compute_saved, layers_saved, exit_block


def _needed_for(model: EarlyExitModel, thresholds: list[float | None]) -> list[bool]:
    saved = model.thresholds
    model.thresholds = list(thresholds)
    try:
        return model._heads_needed()
    finally:
        model.thresholds = saved


def calibrate_thresholds(
    model: EarlyExitModel,
    batches: Iterable[Any],
    *,
    max_quality_drop: float,
    example_inputs: Any = None,
    n_candidates: int = 30,
    reference: torch.Tensor | None = None,
) -> CalibrationResult:
    """Pick the thresholds that save the most compute with quality within budget.

    Quality is measured against the model's own full-depth output on ``batches`` (held-out
    calibration data): prediction agreement for classifiers, mean cosine for embeddings;
    ``max_quality_drop`` bounds 1 - that. ``reference``: the untouched model's outputs on
    ``batches`` when the backbone itself was trained (``joint`` or ``staged``); quality is then
    measured against it, full-depth rows included. The curve is the trade-off of one shared threshold
    swept over its range; the chosen set is then refined head by head. When no setting that
    exits meets the budget, every threshold is None (the full model) and ``met_budget`` is
    False with the reason in ``message``. Sets ``model.thresholds``.
    """
    if max_quality_drop < 0:
        raise ConfigError(f"max_quality_drop={max_quality_drop}: expected ≥ 0 (e.g. 0.005 or 0.02)")
    batches = list(batches)
    outs, final = collect_exit_outputs(model, batches)
    costs = block_costs(model, example_inputs if example_inputs is not None else batches[0])
    cost_dict = {"block_flops": costs[0], "head_flops": costs[1], "final_flops": costs[2]}
    scores = _scores(model.config.criterion, outs)
    if reference is not None and reference.shape != final.shape:
        raise ConfigError(
            f"reference of shape {tuple(reference.shape)} for outputs of shape {tuple(final.shape)}: "
            "pass the untouched model's outputs on exactly these batches"
        )
    ref = final if reference is None else reference.float()
    row_quality = [_row_quality(model.mode, o, ref) for o in outs]
    full_quality = (
        torch.ones(final.shape[0], dtype=torch.float64) if reference is None else _row_quality(model.mode, final, ref)
    )
    metric = "cosine_mean" if model.mode == "embedding" else "agreement"
    n_heads = len(model.heads)

    def evaluate(thr: list[float | None]) -> dict[str, Any]:
        q, saved, layers, exit_block = _simulate(model, outs, final, scores, thr, costs, row_quality, full_quality)
        return {"thresholds": thr, "quality": q, "compute_saved": saved, "layers_saved": layers}

    curve: list[dict[str, Any]] = []
    if model.config.criterion == "patience":
        for p in range(1, n_heads + 1):
            model.patience = p
            r = evaluate([1.0] * n_heads)
            curve.append({"threshold": p, **{k: r[k] for k in ("quality", "compute_saved", "layers_saved")}})
        feasible = [c for c in curve if 1 - c["quality"] <= max_quality_drop + 1e-12]
        best = max(feasible, key=lambda c: c["compute_saved"], default=None)
        if best is not None and best["compute_saved"] > 0:
            model.patience = int(best["threshold"])
            chosen = {"thresholds": [1.0] * n_heads, **best}
        else:
            chosen = None
    else:
        pooled = torch.cat([s for s in scores if s is not None]) if any(s is not None for s in scores) else None
        cands = _candidates(pooled, n_candidates)
        sign = -1.0 if model.config.criterion == "entropy" else 1.0
        for c in cands:
            r = evaluate([sign * c] * n_heads)
            curve.append({"threshold": sign * c, **{k: r[k] for k in ("quality", "compute_saved", "layers_saved")}})
        per_head = [_candidates(s, n_candidates) if s is not None else None for s in scores]
        chosen = _refine(evaluate, per_head, sign, n_heads, max_quality_drop, curve)
    if chosen is None or chosen["compute_saved"] <= 0:
        model.thresholds = [None] * n_heads
        full = evaluate([None] * n_heads)
        return CalibrationResult(
            [None] * n_heads, False, full["compute_saved"], full["layers_saved"], full["quality"], metric,
            max_quality_drop, curve,
            f"no exit threshold keeps {metric} within {max_quality_drop} of the full model on the "
            "calibration data: running the full model (no early exits)",
            cost_dict,
        )
    model.thresholds = list(chosen["thresholds"])
    return CalibrationResult(
        list(chosen["thresholds"]), True, chosen["compute_saved"], chosen["layers_saved"], chosen["quality"],
        metric, max_quality_drop, curve, "", cost_dict,
    )


def _candidates(scores: torch.Tensor | None, n: int) -> list[float]:
    if scores is None or scores.numel() == 0:
        return []
    qs = torch.linspace(0.0, 1.0, n + 1, dtype=torch.float64)
    vals = torch.quantile(scores.double(), qs).tolist()
    return sorted(set(round(v, 6) for v in vals), reverse=True)


def _refine(
    evaluate: Callable[[list[float | None]], dict[str, Any]],
    per_head: list[list[float] | None],
    sign: float,
    n_heads: int,
    budget: float,
    curve: list[dict[str, Any]],
) -> dict[str, Any] | None:
    """Start from the best shared threshold; move one head at a time while it saves more."""

    def ok(r: dict[str, Any]) -> bool:
        return 1 - r["quality"] <= budget + 1e-12

    best: dict[str, Any] | None = None
    for c in curve:
        if ok(c) and (best is None or c["compute_saved"] > best["compute_saved"]):
            best = {"thresholds": [c["threshold"]] * n_heads, **c}
    if best is None:
        best = evaluate([None] * n_heads)
    for _ in range(3):  # a few sweeps; each only ever increases the saving
        improved = False
        for k in range(n_heads):
            if per_head[k] is None:
                continue
            for c in [None, *per_head[k]]:
                thr = list(best["thresholds"])
                thr[k] = None if c is None else sign * c
                r = evaluate(thr)
                if ok(r) and r["compute_saved"] > best["compute_saved"] + 1e-9:
                    best, improved = r, True
        if not improved:
            break
    return best
