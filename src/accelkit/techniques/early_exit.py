"""Early exit: light heads after chosen blocks let easy inputs leave the network early.

Buys: fewer blocks per sample; exited rows leave the batch, so later blocks run on fewer
rows and the saving shows in wall-clock. Costs: head training on calibration data, a
quality drop bounded by calibrated thresholds, and head overhead for rows that stay.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from accelkit._atomic import atomic_write_bytes
from accelkit._threads import thread_count
from accelkit.config import Config
from accelkit.errors import ConfigError
from accelkit.techniques.pooling import mean_pool
from accelkit.train.schedule import warmup_cosine_factor

__all__ = [
    "BlocksNotFoundError",
    "CalibrationResult",
    "EarlyExitConfig",
    "EarlyExitModel",
    "ExitHead",
    "apply_early_exit",
    "calibrate_thresholds",
    "collect_exit_outputs",
    "find_blocks",
    "load_early_exit",
    "save_early_exit",
    "train_exit_heads_",
]

CRITERIA = ("confidence", "entropy", "patience", "stability")
TRAINING = ("distill", "joint", "staged")
BACKBONE_TRAINING = ("joint", "staged")  # these change the backbone: it is saved with the heads
# containers searched, in order, when the config does not name the blocks
_KNOWN_CONTAINERS = ("blocks", "encoder.layer", "layers", "transformer.h", "model.layers", "h")
_KNOWN_FINALS = (("head",), ("ln_f", "lm_head"), ("norm", "lm_head"), ("classifier",))
_FORMAT = "accelkit.early_exit/1"


class BlocksNotFoundError(ConfigError):
    """The model's sequence of blocks could not be found or was not called in order."""


@dataclass
class EarlyExitConfig(Config):
    """Where the exit heads go, what they predict, and when a row may leave.

    ``criterion``: ``confidence`` (exit when max softmax ≥ threshold), ``entropy`` (exit when
    normalised entropy ≤ threshold), ``patience`` (exit when ``patience`` consecutive heads
    agree, PABEE), ``stability`` (embedding models: exit when the cosine between consecutive
    heads' pooled embeddings ≥ threshold). ``thresholds``: one per exit head, ``None`` = that
    head never exits (set by calibration). ``block_names``: module paths of the blocks in call
    order, e.g. ``["blocks.0", "blocks.1", "blocks.2"]``, when they cannot be found by name.
    """

    # added after the first release: left out of to_dict() at their default (None), so earlier cache keys stay valid
    _omit_at_default: ClassVar[tuple[str, ...]] = ("joint_epochs", "joint_lr", "anchor_exit")

    criterion: str = "confidence"
    exit_after: list[int] | None = None  # block indices with a head; None = all but the last
    thresholds: list[float | None] | None = None
    patience: int = 2
    training: str = "distill"  # distill: backbone frozen, heads learn the final output; joint; staged (embeddings)
    epochs: int = 300
    lr: float = 3e-3
    joint_epochs: int | None = None  # joint/staged: passes over the data (None: epochs // 30)
    joint_lr: float | None = None  # joint/staged: backbone learning rate (None: lr / 10)
    anchor_exit: int | None = None  # training="staged": the block whose exit is trained first (None: the last exit)
    weight_decay: float = 1e-3
    temperature: float = 2.0
    head_pool: int = 4  # conv features are average-pooled to at most head_pool×head_pool
    head_hidden: int = 0  # 0 = linear head; >0 adds one hidden ReLU layer
    block_names: list[str] | None = None
    final_names: list[str] | None = None  # modules applied after the last block, in order
    shift_augment: bool = True  # image inputs: also learn from ±1 pixel shifted copies
    seed: int = 0
    version: int = 1

    def __post_init__(self) -> None:
        if self.criterion not in CRITERIA:
            raise ConfigError(f"criterion={self.criterion!r}: expected one of {list(CRITERIA)}")
        if self.training not in TRAINING:
            raise ConfigError(f"training={self.training!r}: expected one of {list(TRAINING)}")
        if self.patience < 1:
            raise ConfigError(f"patience={self.patience}: expected an integer ≥ 1")
        if self.exit_after is not None and (not self.exit_after or min(self.exit_after) < 0):
            raise ConfigError(f"exit_after={self.exit_after}: expected non-empty block indices ≥ 0")
        if self.epochs < 0 or self.lr <= 0 or self.temperature <= 0:
            raise ConfigError(
                f"epochs={self.epochs}, lr={self.lr}, temperature={self.temperature}: "
                "expected epochs ≥ 0 and positive lr and temperature"
            )
        if (self.joint_epochs is not None and self.joint_epochs < 1) or (
            self.joint_lr is not None and not self.joint_lr > 0
        ):
            raise ConfigError(
                f"joint_epochs={self.joint_epochs}, joint_lr={self.joint_lr}: expected None or ≥ 1 and a positive rate"
            )
        if self.anchor_exit is not None and (self.exit_after is None or self.anchor_exit not in self.exit_after):
            raise ConfigError(
                f"anchor_exit={self.anchor_exit}: expected one of exit_after={self.exit_after} (set both, or neither)"
            )
        if self.head_pool < 1 or self.head_hidden < 0:
            raise ConfigError(f"head_pool={self.head_pool}, head_hidden={self.head_hidden}: expected ≥ 1, ≥ 0")


# ---------------------------------------------------------------- finding the blocks


def _get(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def find_blocks(model: nn.Module, block_names: Sequence[str] | None = None) -> list[str]:
    """Module paths of the model's blocks, in call order.

    Searches ``blocks``, ``encoder.layer``, ``layers``, ``transformer.h`` … unless
    ``block_names`` declares them. Raises BlocksNotFoundError naming how to declare them.
    """
    if block_names:
        missing = [n for n in block_names if _get(model, n) is None]
        if missing:
            raise BlocksNotFoundError(
                f"block_names {missing} are not submodules of {type(model).__name__}; "
                f"declare existing paths, e.g. {_example_names(model)}"
            )
        return list(block_names)
    for container in _KNOWN_CONTAINERS:
        mod = _get(model, container)
        if isinstance(mod, (nn.Sequential, nn.ModuleList)) and len(mod) >= 2:
            return [f"{container}.{i}" for i in range(len(mod))]
    raise BlocksNotFoundError(
        f"cannot find a sequence of blocks in {type(model).__name__} (looked for "
        f"{list(_KNOWN_CONTAINERS)}); declare them with EarlyExitConfig(block_names=[...]), "
        f"a list of block module names in call order, e.g. {_example_names(model)}"
    )


def _example_names(model: nn.Module) -> list[str]:
    names = [n for n, _ in model.named_children()][:3]
    return names or ["features.0", "features.1"]


def _find_finals(model: nn.Module, final_names: Sequence[str] | None) -> list[str]:
    if final_names is not None:
        missing = [n for n in final_names if _get(model, n) is None]
        if missing:
            raise BlocksNotFoundError(f"final_names {missing} are not submodules of {type(model).__name__}")
        return list(final_names)
    for names in _KNOWN_FINALS:
        if all(_get(model, n) is not None for n in names):
            return list(names)
    return []  # e.g. a transformers encoder: the last block's output is the output


# ---------------------------------------------------------------- heads


class ExitHead(nn.Module):
    """A fixed pooling then a small trained projection.

    ``classifier``: conv features (C, H, W) are average-pooled to ≤ pool×pool and flattened,
    token features (T, D) mean-pooled; a linear layer gives logits. ``token-classifier``
    (a language model): logits per token, no pooling; a row exits only when all its tokens
    meet the criterion. ``embedding``: token
    features are mean-pooled and a D×D linear map (initialised to identity) predicts the
    model's final pooled embedding.
    """

    def __init__(self, kind: str, feature_shape: Sequence[int], out_features: int, pool: int = 4, hidden: int = 0):
        super().__init__()
        self.spec = {
            "kind": kind, "feature_shape": list(feature_shape), "out_features": out_features,
            "pool": pool, "hidden": hidden,
        }
        self.kind = kind
        self.pool_hw = None
        if len(feature_shape) == 3:  # (C, H, W)
            c, h, w = feature_shape
            self.pool_hw = (min(pool, h), min(pool, w))
            in_features = c * self.pool_hw[0] * self.pool_hw[1]
        else:
            in_features = feature_shape[-1]
        if hidden:
            self.proj = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, out_features))
        else:
            self.proj = nn.Linear(in_features, out_features)
            if kind == "embedding" and in_features == out_features:
                with torch.no_grad():
                    self.proj.weight.copy_(torch.eye(out_features))
                    self.proj.bias.zero_()

    def pool(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() == 4:  # (B, C, H, W)
            if tuple(x.shape[2:]) != self.pool_hw:
                x = nn.functional.adaptive_avg_pool2d(x, self.pool_hw)
            return x.flatten(1)
        if x.dim() == 3 and self.kind != "token-classifier":  # (B, T, D) → (B, D)
            return mean_pool(x, mask)
        return x  # token-classifier: one prediction per token, (B, T, D)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.proj(self.pool(x, mask))


# ---------------------------------------------------------------- the wrapper


class _StopAtFirstBlock(Exception):
    pass


def _slice_rows(value: Any, keep: torch.Tensor, batch: int) -> Any:
    if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == batch and batch > 1:
        return value[keep]
    return value


def _first(value: Any) -> torch.Tensor:
    """The main tensor of a block's or model's output (tensor, tuple, or transformers ModelOutput)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        return value[0]
    if isinstance(value, dict):  # ModelOutput: ordered, first field is the hidden state / logits
        return next(iter(value.values()))
    return value


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


def _row_confidence(logits: torch.Tensor) -> torch.Tensor:
    """Max softmax per row; for per-token logits (B, T, V) the least confident token."""
    conf = logits.float().softmax(-1).amax(-1)
    return conf.amin(-1) if conf.dim() == 2 else conf


def _row_entropy(logits: torch.Tensor) -> torch.Tensor:
    ent = _normalized_entropy(logits)
    return ent.amax(-1) if ent.dim() == 2 else ent


def _same_prediction(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    same = a.argmax(-1) == b.argmax(-1)
    return same.all(-1) if same.dim() == 2 else same


def _normalized_entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = logits.float().log_softmax(-1)
    return -(logp.exp() * logp).sum(-1) / math.log(logits.shape[-1])


def _as_call(inputs: Any) -> tuple[tuple, dict]:
    """A batch as (args, kwargs): a dict is keyword arguments, anything else one positional."""
    return ((), inputs) if isinstance(inputs, dict) else ((inputs,), {})


def _call(fn: Callable, inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return fn(**inputs)
    if isinstance(inputs, (tuple, list)):
        return fn(*inputs)
    return fn(inputs)


# ---------------------------------------------------------------- building


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


# ---------------------------------------------------------------- training


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


def _distill_loss(mode: str, out: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    if mode == "embedding":
        return (1 - nn.functional.cosine_similarity(out, teacher, dim=-1)).mean()
    t = temperature
    out, teacher = out.flatten(0, -2), teacher.flatten(0, -2)  # per-token logits → rows
    soft = nn.functional.kl_div(
        (out / t).log_softmax(-1), (teacher / t).softmax(-1), reduction="batchmean"
    ) * (t * t)
    return soft + nn.functional.cross_entropy(out, teacher.argmax(-1))


def _row_quality(mode: str, out: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per row: cosine to the reference (embeddings) or the fraction of predictions that agree."""
    if mode == "embedding":
        return nn.functional.cosine_similarity(out, reference, dim=-1).double()
    same = (out.argmax(-1) == reference.argmax(-1)).double()
    return same.mean(-1) if same.dim() == 2 else same


def _agreement(mode: str, out: torch.Tensor, reference: torch.Tensor) -> float:
    if mode == "embedding":
        return float(nn.functional.cosine_similarity(out, reference, dim=-1).mean())
    return float((out.argmax(-1) == reference.argmax(-1)).float().mean())


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


def _fit_ridge_heads_on_subset(
    model: EarlyExitModel, batches: list[Any], progress: Callable | None
) -> dict[str, Any]:
    # a spread subset of at most ~96 batches is plenty for a 385×D least-squares fit
    return _fit_embedding_heads_ridge(model, batches[:: max(1, len(batches) // 96)], progress)


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


# ---------------------------------------------------------------- calibration


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


# ---------------------------------------------------------------- save / load


def save_early_exit(model: EarlyExitModel, path: str | os.PathLike) -> Path:
    """Write the heads (safetensors) and config, thresholds, structure (JSON) to a folder.

    The backbone is written only when training changed it (``joint`` or ``staged``); otherwise
    ``load_early_exit`` re-wraps the same baseline.
    """
    from safetensors.torch import save as save_safetensors

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": _FORMAT,
        "config": {**model.config.to_dict(), "thresholds": model.thresholds, "patience": model.patience},
        "mode": model.mode,
        "block_names": model.block_names,
        "final_names": model.final_names,
        "returns_tuple": model.returns_tuple,
        "heads": [h.spec for h in model.heads],
        "details": model._details,
    }
    state = {k: v.detach().contiguous().cpu() for k, v in model.heads.state_dict().items()}
    atomic_write_bytes(folder / "heads.safetensors", save_safetensors(state))
    if model.config.training in BACKBONE_TRAINING:
        backbone = {k: v.detach().clone().contiguous().cpu() for k, v in model.backbone.state_dict().items()}
        atomic_write_bytes(folder / "backbone.safetensors", save_safetensors(backbone))
    atomic_write_bytes(folder / "early_exit.json", json.dumps(meta, indent=1, default=float).encode())
    return folder


def load_early_exit(path: str | os.PathLike, backbone: nn.Module) -> EarlyExitModel:
    """Re-wrap ``backbone`` (the same baseline) with the heads and thresholds saved at ``path``.

    A jointly trained model also carries its fine-tuned backbone weights, loaded into ``backbone``.
    """
    from safetensors.torch import load_file

    from accelkit.errors import SchemaError

    folder = Path(path)
    meta_path = folder / "early_exit.json"
    if not meta_path.exists():
        raise SchemaError(f"{meta_path} does not exist; point at a folder written by save_early_exit")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != _FORMAT:
        raise SchemaError(f"{meta_path}: format {meta.get('format')!r}, expected {_FORMAT!r}")
    config = EarlyExitConfig.from_dict(meta["config"])
    find_blocks(backbone, meta["block_names"])
    if config.training in BACKBONE_TRAINING:
        weights = folder / "backbone.safetensors"
        if not weights.exists():
            raise SchemaError(
                f"{weights} is missing: an early-exit model trained with training={config.training!r} "
                "needs its backbone weights"
            )
        backbone.load_state_dict(load_file(weights))
    heads = [
        ExitHead(s["kind"], s["feature_shape"], s["out_features"], s["pool"], s["hidden"]) for s in meta["heads"]
    ]
    model = EarlyExitModel(
        backbone, config, heads, mode=meta["mode"], block_names=meta["block_names"],
        final_names=meta["final_names"], returns_tuple=meta["returns_tuple"],
    )
    model.heads.load_state_dict(load_file(folder / "heads.safetensors"))
    model.accelkit_details = meta.get("details") or {}
    return model.eval()
