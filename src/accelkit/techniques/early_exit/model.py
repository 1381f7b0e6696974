"""The early-exit wrapper: ``EarlyExitModel`` runs the blocks itself and drops the rows that
leave at a head; ``apply_early_exit`` builds it around a model with untrained heads."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from accelkit.errors import ConfigError
from accelkit.tasks.pooling import mean_pool
from accelkit.techniques._blocks import (
    BlocksNotFoundError,
    _call,
    _find_finals,
    _first,
    _slice_rows,
    find_blocks,
)
from accelkit.techniques.early_exit._criteria import _row_confidence, _row_entropy, _same_prediction
from accelkit.techniques.early_exit.config import EarlyExitConfig
from accelkit.techniques.early_exit.heads import ExitHead

__all__ = ["EarlyExitModel", "apply_early_exit"]


class _StopAtFirstBlock(Exception):
    pass


class EarlyExitModel(nn.Module):
    """A sequence-of-blocks model with exit heads; rows that exit leave the batch.

    Call it like the wrapped model. The model's own forward runs up to the first block (a
    pre-hook captures that block's inputs and stops it); the blocks then run here, and after
    each headed block the rows whose criterion is met are written out and dropped. Per-row
    exit blocks of the last call are in ``last_exit_blocks``; running counts in ``exit_counts``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        config: EarlyExitConfig,
        heads: Sequence[ExitHead],
        *,
        mode: str,
        block_names: Sequence[str],
        final_names: Sequence[str],
        returns_tuple: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.config = config
        self.heads = nn.ModuleList(heads)
        self.mode = mode  # "classifier" | "embedding"
        self.block_names = list(block_names)
        self.final_names = list(final_names)
        self.returns_tuple = returns_tuple
        n = len(self.block_names)
        self.exit_after = list(config.exit_after) if config.exit_after is not None else list(range(n - 1))
        if max(self.exit_after) >= n - 1 or len(set(self.exit_after)) != len(self.exit_after):
            raise ConfigError(
                f"exit_after={self.exit_after}: expected distinct block indices below {n - 1} "
                f"(the model has {n} blocks; the last one already ends in the model's own head)"
            )
        if len(self.heads) != len(self.exit_after):
            raise ConfigError(f"{len(self.heads)} heads for exit_after={self.exit_after}: expected one per index")
        # thresholds and patience are buffers so that any state_dict save carries them (NaN = never)
        self.register_buffer("exit_thresholds", torch.full((len(self.heads),), math.nan, dtype=torch.float64))
        self.register_buffer("exit_patience", torch.tensor(config.patience, dtype=torch.long))
        thresholds = list(config.thresholds or [None] * len(self.heads))
        if len(thresholds) != len(self.heads):
            raise ConfigError(f"thresholds={thresholds}: expected {len(self.heads)} values (None = never exit)")
        self.thresholds = thresholds
        self.last_exit_blocks: torch.Tensor | None = None
        self.exit_counts = torch.zeros(n, dtype=torch.long)
        self._details: dict[str, Any] = {}

    @property
    def accelkit_details(self) -> dict[str, Any]:
        """What was decided (thresholds, trade-off curve) and the exits seen since reset_stats."""
        details = dict(self._details)
        details["exit_histogram"] = self.exit_histogram()
        costs = details.get("costs")
        if costs and int(self.exit_counts.sum()):
            details["compute_saved_measured"] = _saved_from_counts(self, costs)
            n = len(self.block_names)
            mean_blocks = float((self.exit_counts * torch.arange(1, n + 1)).sum()) / int(self.exit_counts.sum())
            details["layers_saved_measured"] = 1.0 - mean_blocks / n
        return details

    @accelkit_details.setter
    def accelkit_details(self, value: dict[str, Any]) -> None:
        self._details = dict(value)

    @property
    def thresholds(self) -> list[float | None]:
        """One per exit head; None: that head never lets a row leave."""
        return [None if math.isnan(t) else t for t in self.exit_thresholds.tolist()]

    @thresholds.setter
    def thresholds(self, values: Sequence[float | None]) -> None:
        if len(values) != len(self.heads):
            raise ConfigError(f"thresholds={list(values)}: expected {len(self.heads)} values (None = never exit)")
        filled = [math.nan if v is None else float(v) for v in values]
        self.exit_thresholds.copy_(torch.tensor(filled, dtype=torch.float64))

    @property
    def patience(self) -> int:
        return int(self.exit_patience)

    @patience.setter
    def patience(self, value: int) -> None:
        if value < 1:
            raise ConfigError(f"patience={value}: expected an integer ≥ 1")
        self.exit_patience.fill_(int(value))

    # --- structure

    @property
    def blocks(self) -> list[nn.Module]:
        return [self.backbone.get_submodule(n) for n in self.block_names]

    def _finals(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.final_names:
            x = self.backbone.get_submodule(name)(x)
        return x

    def _capture(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """Run the backbone's own forward up to the first block; return that block's inputs."""
        captured: dict[str, Any] = {}

        def hook(module, a, kw):
            captured["args"], captured["kwargs"] = a, kw
            raise _StopAtFirstBlock

        handle = self.blocks[0].register_forward_pre_hook(hook, with_kwargs=True)
        try:
            self.backbone(*args, **kwargs)
        except _StopAtFirstBlock:
            pass
        finally:
            handle.remove()
        if "args" not in captured:
            raise BlocksNotFoundError(
                f"{type(self.backbone).__name__}.forward never called block {self.block_names[0]!r}; "
                "declare the blocks it runs in order with EarlyExitConfig(block_names=[...])"
            )
        return captured["args"], captured["kwargs"]

    def _block_inputs(self, args: tuple, kwargs: dict) -> tuple[torch.Tensor, tuple, dict, torch.Tensor | None]:
        """(first block's hidden input, its other positional args, its kwargs, the attention mask
        the heads pool with — embedding mode only) for a call with ``args``/``kwargs``."""
        block_args, block_kwargs = self._capture(args, kwargs)
        mask = kwargs.get("attention_mask") if self.mode == "embedding" else None
        return block_args[0], tuple(block_args[1:]), block_kwargs, mask

    def can_exit(self) -> bool:
        """False when no threshold lets any row leave early (the model then runs in full)."""
        if self.config.criterion == "patience":
            return any(t is not None for t in self.thresholds) and len(self.heads) > self.patience
        for t in self.thresholds:
            if t is None or (isinstance(t, float) and math.isnan(t)):
                continue
            if self.config.criterion in ("confidence", "stability") and t > 1.0:
                continue
            if self.config.criterion == "entropy" and t < 0.0:
                continue
            return True
        return False

    # --- criteria

    def _exit_mask(
        self, out: torch.Tensor, prev: torch.Tensor | None, state: dict, thr: float | None
    ) -> torch.Tensor | None:
        """Rows that leave at this head (None: nobody can leave here)."""
        crit = self.config.criterion
        if crit == "patience":
            if prev is None:
                state["count"] = torch.zeros(out.shape[0], dtype=torch.long, device=out.device)
            else:
                same = _same_prediction(out, prev)
                state["count"] = torch.where(same, state["count"] + 1, torch.zeros_like(state["count"]))
            return None if thr is None else state["count"] >= state["patience"]
        if thr is None:
            return None
        if crit == "confidence":
            return _row_confidence(out) >= thr
        if crit == "entropy":
            return _row_entropy(out) <= thr
        if prev is None:  # stability needs the previous head's embedding
            return None
        return nn.functional.cosine_similarity(out, prev, dim=-1) >= thr

    def _heads_needed(self) -> list[bool]:
        """Which heads must run: those that may exit, and those a later criterion compares to."""
        crit = self.config.criterion
        if crit == "patience":
            return [True] * len(self.heads) if self.can_exit() else [False] * len(self.heads)
        active = [t is not None for t in self.thresholds]
        if crit == "stability":
            return [active[k] or (k + 1 < len(active) and active[k + 1]) for k in range(len(active))]
        return active

    # --- forward

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        x, rest, block_kwargs, mask = self._block_inputs(args, kwargs)
        batch = x.shape[0]
        rows = torch.arange(batch, device=x.device)  # original row of each active row
        exit_block = torch.full((batch,), len(self.block_names) - 1, dtype=torch.long)
        result: torch.Tensor | None = None
        needed = self._heads_needed()
        thresholds = self.thresholds
        head_at = {b: k for k, b in enumerate(self.exit_after)}
        prev: torch.Tensor | None = None
        state: dict[str, Any] = {"patience": self.patience}
        for i, block in enumerate(self.blocks):
            x = _first(block(x, *rest, **block_kwargs))
            k = head_at.get(i)
            if k is None or not needed[k]:
                continue
            out = self.heads[k](x, mask)
            leave = self._exit_mask(out, prev, state, thresholds[k])
            prev = out
            if leave is None or not bool(leave.any()):
                continue
            emitted = self._emit(out[leave], x)
            if result is None:
                result = emitted.new_empty((batch, *emitted.shape[1:]))
            result[rows[leave]] = emitted
            exit_block[rows[leave].cpu()] = i
            keep = ~leave
            n_active = rows.shape[0]
            rows = rows[keep]
            if rows.numel() == 0:
                break
            x = x[keep]
            prev = prev[keep]
            if "count" in state:
                state["count"] = state["count"][keep]
            mask = _slice_rows(mask, keep, n_active)
            rest = tuple(_slice_rows(a, keep, n_active) for a in rest)
            block_kwargs = {key: _slice_rows(v, keep, n_active) for key, v in block_kwargs.items()}
        if rows.numel():
            final = self._finals(x)
            if result is None and rows.numel() == batch:
                result = final
            else:
                if result is None:
                    result = final.new_empty((batch, *final.shape[1:]))
                result[rows] = final.to(result.dtype)
        self.last_exit_blocks = exit_block
        self.exit_counts += torch.bincount(exit_block, minlength=len(self.block_names))
        return (result,) if self.returns_tuple else result

    def _emit(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "embedding" and x.dim() == 3:
            # (b, D) → (b, T, D): every token carries the predicted embedding, so the
            # workload's mask-aware mean pool returns exactly that embedding
            return out.unsqueeze(1).expand(-1, x.shape[1], -1)
        return out

    def reset_stats(self) -> None:
        self.exit_counts.zero_()

    def exit_histogram(self) -> list[dict[str, Any]]:
        total = int(self.exit_counts.sum()) or 1
        return [
            {"block": i, "name": n, "rows": int(c), "fraction": int(c) / total}
            for i, (n, c) in enumerate(zip(self.block_names, self.exit_counts.tolist(), strict=True))
        ]

    # --- no-exit pass used by training and calibration

    def all_exits(self, *args: Any, **kwargs: Any) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Every head's output and the final output for every row (no row leaves).

        Embedding mode returns the final output mean-pooled, (B, D).
        """
        x, rest, block_kwargs, mask = self._block_inputs(args, kwargs)
        head_at = {b: k for k, b in enumerate(self.exit_after)}
        outs: list[torch.Tensor] = []
        for i, block in enumerate(self.blocks):
            x = _first(block(x, *rest, **block_kwargs))
            if i in head_at:
                outs.append(self.heads[head_at[i]](x, mask))
        final = self._finals(x)
        if self.mode == "embedding" and final.dim() == 3:
            final = mean_pool(final, mask)
        return outs, final


def _saved_from_counts(model: EarlyExitModel, costs: dict[str, Any]) -> float:
    """Compute saved vs the baseline given the exit counts and per-row FLOPs per part."""
    block_flops, head_flops, final_flops = costs["block_flops"], costs["head_flops"], costs["final_flops"]
    baseline = sum(block_flops) + final_flops
    needed = model._heads_needed()
    n = len(block_flops)
    spent = 0.0
    for b, count in enumerate(model.exit_counts.tolist()):
        row = sum(block_flops[: b + 1])
        row += sum(h for k, h in enumerate(head_flops) if needed[k] and model.exit_after[k] <= b)
        row += final_flops if b == n - 1 else 0.0
        spent += count * row
    return 1.0 - spent / (baseline * int(model.exit_counts.sum()))


def _features_probe(model: nn.Module, block_names: list[str], example: Any) -> tuple[list[torch.Size], Any]:
    """Per-row output shapes of each block and the model's output on ``example``."""
    shapes: list[torch.Size] = []
    handles = [
        model.get_submodule(n).register_forward_hook(lambda m, a, o: shapes.append(_first(o).shape[1:]))
        for n in block_names
    ]
    try:
        with torch.no_grad():
            out = _call(model, example)
    finally:
        for h in handles:
            h.remove()
    if len(shapes) != len(block_names):
        raise BlocksNotFoundError(
            f"{type(model).__name__}.forward called {len(shapes)} of the {len(block_names)} blocks "
            f"{block_names}; declare the blocks it runs, in order, with EarlyExitConfig(block_names=[...])"
        )
    return shapes, out


def apply_early_exit(
    model: nn.Module, config: EarlyExitConfig, example_inputs: Any, *, mode: str | None = None
) -> EarlyExitModel:
    """Wrap ``model`` with untrained exit heads (train them with ``train_exit_heads_``).

    ``mode``: ``classifier`` (the output is logits) or ``embedding`` (a transformers encoder
    whose pooled last hidden state is the output); guessed from the output when None.
    """
    block_names = find_blocks(model, config.block_names)
    final_names = _find_finals(model, config.final_names)
    shapes, out = _features_probe(model, block_names, example_inputs)
    returns_tuple = not isinstance(out, torch.Tensor)
    out_t = _first(out) if returns_tuple else out
    if mode is None:
        mode = "embedding" if (returns_tuple and out_t.dim() == 3) else "classifier"
    if mode not in ("classifier", "embedding"):
        raise ConfigError(f"mode={mode!r}: expected 'classifier' or 'embedding'")
    if config.criterion == "stability" and mode != "embedding":
        raise ConfigError("criterion='stability' is for embedding models; use 'confidence', 'entropy' or 'patience'")
    if mode == "embedding" and config.criterion != "stability":
        raise ConfigError(f"criterion={config.criterion!r} needs logits; embedding models use 'stability'")
    exit_after = config.exit_after if config.exit_after is not None else list(range(len(block_names) - 1))
    if max(exit_after) >= len(block_names) - 1:
        raise ConfigError(
            f"exit_after={exit_after}: the model has {len(block_names)} blocks; use indices below {len(block_names) - 1}"
        )
    out_features = out_t.shape[-1]
    kind = "token-classifier" if mode == "classifier" and out_t.dim() == 3 else mode
    torch.manual_seed(config.seed)
    heads = [
        ExitHead(kind, list(shapes[b]), out_features, config.head_pool, config.head_hidden) for b in exit_after
    ]
    wrapped = EarlyExitModel(
        model, config, heads, mode=mode, block_names=block_names, final_names=final_names,
        returns_tuple=returns_tuple,
    )
    return wrapped.eval()
