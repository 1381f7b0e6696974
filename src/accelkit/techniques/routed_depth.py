"""Routed depth: a router reads each input before any layer runs and sends it down the shallowest
path (a distilled shallow copy of the model, or the full model) predicted to stay within budget.

Buys: fewer layer evaluations for easy inputs; rows are grouped by path, so each path runs on
fewer rows and the saving shows in wall-clock. Costs: the shallow paths must be trained
(distillation), the router and thresholds are fitted on held-out calibration data, and the
quality drop is bounded only on average, by calibration. Unlike early exit, a row never pays
for a path it does not take: the choice is made from the token embeddings alone.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from accelkit._atomic import atomic_write_bytes
from accelkit.config import Config
from accelkit.errors import ConfigError, SchemaError
from accelkit.tasks.pooling import mean_pool
from accelkit.techniques._blocks import _first, bert_encoder_layers
from accelkit.techniques._workload_kinds import require_preset
from accelkit.techniques.distill.sentence import SentenceDistillConfig
from accelkit.techniques.early_exit._ridge import _ridge
from accelkit.techniques.registry import BuildContext, Built, register_technique
from accelkit.workloads.base import Workload

__all__ = [
    "RouteCalibration",
    "RoutedDepthConfig",
    "RoutedDepthModel",
    "TokenEmbeddingFeatures",
    "apply_routed_depth",
    "calibrate_router",
    "load_routed_depth",
    "save_routed_depth",
]

_FORMAT = "accelkit.routed_depth/1"


@dataclass
class RoutedDepthConfig(Config):
    """How the router is fitted and its thresholds chosen.

    ``max_quality_drop`` bounds 1 - mean quality on calibration data (quality: cosine of the
    mean-pooled output to the full model's, per row; 0.015 = mean cosine ≥ 0.985). The router
    is a ridge regression (penalty ``ridge`` × rows) from input features to each shallow
    path's quality; thresholds are never chosen on rows the router was fitted to (out-of-fold
    predictions over ``folds`` folds, or a separate router set). ``grid`` candidate
    thresholds per path. ``margin_sigmas`` turns the budget into a confidence bound: with 2.0
    the calibration mean minus two standard errors must stay within budget, so on fresh
    inputs of the same kind the mean holds with about 97.5% confidence. Choosing the best of
    many threshold sets on the same rows flatters them; ``validate_folds`` measures by how
    much (choose on k-1 folds, score the k-th) and raises the floor by that optimism.
    """

    max_quality_drop: float = 0.015
    margin_sigmas: float = 0.0  # > 0: the budget must hold for mean - margin_sigmas · standard error
    validate_folds: int = 0  # > 1: also subtract the optimism of choosing thresholds, measured by k-fold
    ridge: float = 0.5  # L2 penalty per fitted row
    folds: int = 5
    grid: int = 41

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_quality_drop <= 1.0:
            raise ConfigError(f"max_quality_drop={self.max_quality_drop}: expected 0..1 (0.015 = mean cosine ≥ 0.985)")
        if self.margin_sigmas < 0:
            raise ConfigError(f"margin_sigmas={self.margin_sigmas}: expected ≥ 0 (2.0 ≈ 97.5% one-sided confidence)")
        if self.validate_folds == 1 or self.validate_folds < 0:
            raise ConfigError(f"validate_folds={self.validate_folds}: expected 0 (off) or ≥ 2")
        if self.ridge <= 0:
            raise ConfigError(f"ridge={self.ridge}: expected > 0 (the router's L2 regularisation)")
        if self.folds < 2:
            raise ConfigError(f"folds={self.folds}: expected ≥ 2 (thresholds are chosen on out-of-fold predictions)")
        if self.grid < 2:
            raise ConfigError(f"grid={self.grid}: expected ≥ 2 candidate thresholds per path")


class TokenEmbeddingFeatures(nn.Module):
    """Router features read off a BERT-style model's embedding layer, before any encoder layer:
    mean and spread of the (real) token embeddings, and the log of the length. Costs one
    embedding lookup, nothing next to a transformer layer."""

    def __init__(self, embeddings: nn.Module) -> None:
        super().__init__()
        self.embeddings = embeddings

    @property
    def width(self) -> int:
        return 2 * int(self.embeddings.word_embeddings.embedding_dim) + 1

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_: Any) -> torch.Tensor:
        x = self.embeddings(input_ids=input_ids)  # (B, T, D)
        if attention_mask is None:
            attention_mask = torch.ones(input_ids.shape, dtype=torch.long, device=input_ids.device)
        mean = mean_pool(x, attention_mask)
        spread = mean_pool((x - mean.unsqueeze(1)) ** 2, attention_mask).sqrt()
        length = attention_mask.sum(1, keepdim=True).to(x.dtype).clamp(min=1).log()
        return torch.cat([mean, spread, length], dim=1)


class RoutedDepthModel(nn.Module):
    """``paths`` ordered shallow → full (the last is the full model); ``depths`` their layer counts.

    Each row goes to the first (cheapest) shallow path whose predicted quality reaches its
    threshold, otherwise to the full model. Returns the last hidden state (B, T, D) like the
    encoder it wraps; ``route_counts`` records how many rows took each path. Inference only:
    the router is fitted in closed form by :func:`calibrate_router`, never by gradients.
    """

    def __init__(
        self,
        paths: Sequence[nn.Module],
        depths: Sequence[int],
        features: nn.Module,
        n_features: int,
        names: Sequence[str] | None = None,
        thresholds: Sequence[float | None] | None = None,
    ) -> None:
        super().__init__()
        if len(paths) < 2:
            raise ConfigError(f"{len(paths)} path(s): give at least one shallow path and the full model (last)")
        if len(depths) != len(paths) or any(int(d) < 1 for d in depths):
            raise ConfigError(f"depths={list(depths)}: expected one positive layer count per path ({len(paths)})")
        self.paths = nn.ModuleList(paths)
        self.depths = [int(d) for d in depths]
        self.names = list(names) if names is not None else [f"path{i}" for i in range(len(paths) - 1)] + ["full"]
        self.features = features
        n_shallow = len(paths) - 1
        self.router = nn.Linear(n_features, n_shallow)  # predicted quality of each shallow path
        nn.init.zeros_(self.router.weight)
        nn.init.zeros_(self.router.bias)
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_scale", torch.ones(n_features))
        self.register_buffer("route_thresholds", torch.full((n_shallow,), float("nan")))
        self.route_counts = torch.zeros(len(paths), dtype=torch.long)
        self._details: dict[str, Any] = {}
        if thresholds is not None:
            self.thresholds = thresholds

    @property
    def thresholds(self) -> list[float | None]:
        """One per shallow path; None: that path takes no rows."""
        return [None if math.isnan(t) else t for t in self.route_thresholds.tolist()]

    @thresholds.setter
    def thresholds(self, values: Sequence[float | None]) -> None:
        values = list(values)
        if len(values) != len(self.paths) - 1:
            raise ConfigError(f"{len(values)} thresholds for {len(self.paths) - 1} shallow paths: give one per shallow path")
        self.route_thresholds.copy_(torch.tensor([float("nan") if v is None else float(v) for v in values]))

    def can_route(self) -> bool:
        """False when no threshold lets any row take a shallow path (the model then runs in full)."""
        return any(t is not None for t in self.thresholds)

    @torch.no_grad()
    def predicted_quality(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, n_shallow) the router's estimate of each shallow path's quality per row."""
        return self.router((feats - self.feature_mean) / self.feature_scale)

    def route(self, predicted: torch.Tensor) -> torch.Tensor:
        """(B,) index of the path each row takes given predicted qualities (B, n_shallow)."""
        return _route(predicted, self.route_thresholds, len(self.paths) - 1)

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        inputs = {"input_ids": input_ids, **({"attention_mask": attention_mask} if attention_mask is not None else {}),
                  **kwargs}
        full = len(self.paths) - 1
        if self.can_route():
            chosen = self.route(self.predicted_quality(self.features(**inputs)))
        else:
            chosen = torch.full((input_ids.shape[0],), full, dtype=torch.long, device=input_ids.device)
        self.route_counts += torch.bincount(chosen.cpu(), minlength=len(self.paths))
        if bool((chosen == chosen[0]).all()):  # one group: no gather/scatter
            return _hidden(self.paths[int(chosen[0])](**inputs))
        out: torch.Tensor | None = None
        for p in chosen.unique().tolist():
            rows = (chosen == p).nonzero(as_tuple=True)[0]
            sub = {k: (v[rows] if isinstance(v, torch.Tensor) and v.shape[:1] == input_ids.shape[:1] else v)
                   for k, v in inputs.items()}
            hidden = _hidden(self.paths[p](**sub))
            if out is None:
                out = hidden.new_zeros((input_ids.shape[0], *hidden.shape[1:]))
            out[rows] = hidden
        assert out is not None
        return out

    def reset_stats(self) -> None:
        self.route_counts.zero_()

    def route_histogram(self) -> list[dict[str, Any]]:
        total = int(self.route_counts.sum()) or 1
        return [{"path": n, "layers": d, "rows": int(c), "fraction": int(c) / total}
                for n, d, c in zip(self.names, self.depths, self.route_counts.tolist(), strict=True)]

    @property
    def accelkit_details(self) -> dict[str, Any]:
        """What calibration decided (thresholds, curve) and the routes taken since reset_stats."""
        details = dict(self._details)
        details["route_histogram"] = self.route_histogram()
        details["thresholds"] = self.thresholds
        if int(self.route_counts.sum()):
            mean_depth = float((self.route_counts * torch.tensor(self.depths)).sum()) / int(self.route_counts.sum())
            details["layers_saved_measured"] = 1.0 - mean_depth / self.depths[-1]
        return details

    @accelkit_details.setter
    def accelkit_details(self, value: dict[str, Any]) -> None:
        self._details = dict(value)


def _hidden(out: Any) -> torch.Tensor:
    hidden = getattr(out, "last_hidden_state", None)  # HF model outputs
    return hidden if hidden is not None else _first(out)


def _route(predicted: torch.Tensor, thresholds: torch.Tensor, full: int) -> torch.Tensor:
    # cheapest first: a row takes the first shallow path whose prediction reaches its threshold
    chosen = torch.full((predicted.shape[0],), full, dtype=torch.long, device=predicted.device)
    for p in reversed(range(predicted.shape[1])):
        t = float(thresholds[p])
        if not math.isnan(t):
            chosen[predicted[:, p] >= t] = p
    return chosen


def _encoder_depth(model: nn.Module) -> int | None:
    layers = bert_encoder_layers(model)
    return len(layers) if layers is not None else None


def apply_routed_depth(
    full_model: nn.Module,
    shallow_paths: Sequence[nn.Module],
    *,
    depths: Sequence[int] | None = None,
    features: nn.Module | None = None,
    n_features: int | None = None,
    names: Sequence[str] | None = None,
) -> RoutedDepthModel:
    """Wrap ``full_model`` and cheaper ``shallow_paths`` (ordered cheapest first) under one router.

    For BERT-style encoders (``encoder.layer``, ``embeddings``) the depths and the router
    features (:class:`TokenEmbeddingFeatures` of the full model) are found; for other models
    pass ``depths=`` (layer count per path, full model last), ``features=`` (a module mapping
    the model's keyword inputs to (B, F)) and ``n_features=F``. The router routes nothing
    until :func:`calibrate_router` has set thresholds.
    """
    paths = [*shallow_paths, full_model]
    if not shallow_paths:
        raise ConfigError("shallow_paths=[]: give at least one cheaper model, e.g. a distilled student")
    if depths is None:
        found = [_encoder_depth(p) for p in paths]
        if None in found:
            raise ConfigError("could not count layers (no encoder.layer): pass depths=[layers of each path, full last]")
        depths = [int(d) for d in found]  # type: ignore[arg-type]
    if list(depths)[-1] <= max(list(depths)[:-1]):
        raise ConfigError(f"depths={list(depths)}: every shallow path must have fewer layers than the full model (last)")
    if features is None:
        emb = getattr(full_model, "embeddings", None)
        if emb is None or not hasattr(emb, "word_embeddings"):
            raise ConfigError(
                f"{type(full_model).__name__} has no BERT-style embeddings: pass features= (inputs → (B, F)) and n_features="
            )
        features = TokenEmbeddingFeatures(emb)
        n_features = features.width
    if n_features is None:
        raise ConfigError("features= was given without n_features=: say how many features it returns per row")
    names = list(names) if names is not None else [f"{d}-layer" for d in depths[:-1]] + ["full"]
    return RoutedDepthModel(paths, depths, features, n_features, names=names).eval()


# ---------------------------------------------------------------- calibration


@dataclass
class RouteCalibration:
    """What calibration chose, on held-out data: thresholds, the quality and saving they give, and
    the whole trade-off curve (Pareto points over the threshold grid)."""

    thresholds: list[float | None]
    quality: float
    quality_se: float  # standard error of that mean over the calibration rows
    selection_optimism: float  # how much choosing thresholds flattered held-out quality (validate_folds)
    layers_saved: float
    met_budget: bool
    n_rows: int
    path_quality: list[float]  # mean quality of each shallow path over all calibration rows
    router_spearman: list[float]  # rank correlation of out-of-fold prediction and true quality, per path
    curve: list[dict[str, float]] = field(default_factory=list)
    message: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _row_quality(out: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    a = mean_pool(out, mask) if out.dim() == 3 else out
    b = mean_pool(reference, mask) if reference.dim() == 3 else reference
    return nn.functional.cosine_similarity(a.float(), b.float(), dim=-1)


@torch.no_grad()
def _collect(
    model: RoutedDepthModel, batches: Sequence[dict[str, torch.Tensor]], progress: Callable[[int, int], None] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Router features (N, F) and each shallow path's per-row quality (N, n_shallow)."""
    feats, quality = [], []
    for i, batch in enumerate(batches):
        mask = batch.get("attention_mask")
        reference = _hidden(model.paths[-1](**batch))
        quality.append(torch.stack([_row_quality(_hidden(p(**batch)), reference, mask) for p in model.paths[:-1]], 1))
        feats.append(model.features(**batch).float())
        if progress is not None:
            progress(i + 1, len(batches))
    if not feats:
        raise ConfigError("no calibration batches: give held-out inputs (never evaluation data) to fit the router on")
    return torch.cat(feats), torch.cat(quality)


def _ridge_fit(x: torch.Tensor, y: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights (F, P) and bias (P,) of a ridge regression (bias not penalised)."""
    x1 = torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], 1)
    w = _ridge(x1.T @ x1, x1.T @ y.double(), lam)
    return w[:-1], w[-1]


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = a.argsort().argsort().double(), b.argsort().argsort().double()
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def _simulate(predicted: torch.Tensor, quality: torch.Tensor, thresholds: torch.Tensor,
              depths: list[int]) -> tuple[float, float, float]:
    """(mean quality, layer evaluations saved, standard error of the mean quality) if rows were
    routed with ``thresholds``."""
    full = len(depths) - 1
    chosen = _route(predicted, thresholds, full)
    q = torch.ones(len(chosen), dtype=quality.dtype)
    shallow = chosen < full
    q[shallow] = quality[shallow.nonzero(as_tuple=True)[0], chosen[shallow]]
    mean_depth = torch.tensor(depths, dtype=torch.double)[chosen].mean()
    se = float(q.std() / math.sqrt(len(q))) if len(q) > 1 else 0.0
    return float(q.mean()), float(1.0 - mean_depth / depths[-1]), se


def _set_router(model: RoutedDepthModel, feats: torch.Tensor, quality: torch.Tensor, ridge: float) -> None:
    mean, scale = feats.mean(0), feats.std(0).clamp(min=1e-6)
    w, b = _ridge_fit((feats - mean) / scale, quality, ridge * len(feats))
    model.feature_mean.copy_(mean)
    model.feature_scale.copy_(scale)
    model.router.weight.data.copy_(w.T.float())
    model.router.bias.data.copy_(b.float())


def calibrate_router(
    model: RoutedDepthModel,
    batches: Sequence[dict[str, torch.Tensor]],
    config: RoutedDepthConfig | None = None,
    *,
    router_batches: Sequence[dict[str, torch.Tensor]] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RouteCalibration:
    """Fit the router and set the thresholds that save the most layer evaluations while mean
    quality on held-out ``batches`` stays ≥ 1 - ``config.max_quality_drop``.

    Quality is the cosine of each row's mean-pooled output to the full model's (the full path
    scores 1). With ``router_batches`` (more unseen inputs, e.g. package docstrings for
    minilm) the router is fitted on those and the thresholds chosen on ``batches``, which the
    router never saw. Without, thresholds are chosen on ``config.folds``-fold out-of-fold
    predictions over ``batches`` and the router is then refitted on all of them. When no
    threshold meets the budget the thresholds are all None: the model runs in full, and
    ``message`` says so.
    """
    config = config or RoutedDepthConfig()
    n_batches = len(batches) + len(router_batches or ())
    feats, quality = _collect(model, batches, progress and (lambda i, _: progress(i, n_batches)))
    n, n_shallow = quality.shape
    if router_batches is not None:
        offset = len(batches)
        r_feats, r_quality = _collect(model, router_batches, progress and (lambda i, _: progress(offset + i, n_batches)))
        _set_router(model, r_feats, r_quality, config.ridge)
        predicted = model.predicted_quality(feats).double()
    else:
        if n < 2 * config.folds:
            raise ConfigError(f"{n} calibration rows for {config.folds} folds: give at least {2 * config.folds} rows")
        predicted = torch.empty_like(quality, dtype=torch.double)
        fold = torch.arange(n) % config.folds
        for k in range(config.folds):
            _set_router(model, feats[fold != k], quality[fold != k], config.ridge)
            predicted[fold == k] = model.predicted_quality(feats[fold == k]).double()
        _set_router(model, feats, quality, config.ridge)
    with torch.no_grad():
        optimism = _selection_optimism(predicted, quality.double(), model.depths, config)
        thresholds, q, saved, se, curve = _choose_thresholds(predicted, quality.double(), model.depths, config,
                                                             optimism)
    model.thresholds = thresholds
    met = saved > 0
    floor = 1.0 - config.max_quality_drop
    bound = f" (less {config.margin_sigmas:g} standard errors)" if config.margin_sigmas else ""
    bound += f" (less selection optimism {optimism:.4f})" if optimism else ""
    message = "" if met else (
        f"no threshold keeps mean quality{bound} ≥ {floor:.4f} while routing any row to a shallow path: "
        "the model runs in full (raise max_quality_drop or train better shallow paths)"
    )
    return RouteCalibration(
        thresholds=thresholds, quality=q, quality_se=se, selection_optimism=optimism, layers_saved=saved, met_budget=met, n_rows=n,
        path_quality=quality.mean(0).tolist(),
        router_spearman=[_spearman(predicted[:, p], quality[:, p].double()) for p in range(n_shallow)],
        curve=curve, message=message,
    )


def _selection_optimism(
    predicted: torch.Tensor, quality: torch.Tensor, depths: list[int], config: RoutedDepthConfig
) -> float:
    """Mean over ``config.validate_folds`` folds of (quality the chosen thresholds promise on the
    other folds − quality they give on this one); 0 when validation is off or it came out negative."""
    k = config.validate_folds
    if k < 2:
        return 0.0
    n = len(quality)
    if n < 2 * k:
        raise ConfigError(f"{n} calibration rows for validate_folds={k}: give at least {2 * k} rows")
    fold = torch.randperm(n, generator=torch.Generator().manual_seed(0)) % k
    gaps = []
    for i in range(k):
        train, test = fold != i, fold == i
        thr, promised, _, _, _ = _choose_thresholds(predicted[train], quality[train], depths, config)
        t = torch.tensor([float("nan") if v is None else v for v in thr], dtype=torch.double)
        gaps.append(promised - _simulate(predicted[test], quality[test], t, depths)[0])
    return max(0.0, sum(gaps) / k)


def _choose_thresholds(
    predicted: torch.Tensor, quality: torch.Tensor, depths: list[int], config: RoutedDepthConfig,
    optimism: float = 0.0,
) -> tuple[list[float | None], float, float, float, list[dict[str, float]]]:
    """Exhaustive search over per-path candidate thresholds (quantiles of the predictions, and
    "never"): the most layers saved with mean quality (less the margin) ≥ the floor; and the Pareto curve."""
    n_shallow = predicted.shape[1]
    qs = torch.linspace(0, 1, config.grid, dtype=torch.double)
    cands = [[float("nan")] + sorted(set(torch.quantile(predicted[:, p], qs).tolist())) for p in range(n_shallow)]
    if math.prod(len(c) for c in cands) > 200_000:
        raise ConfigError(f"{n_shallow} shallow paths × grid {config.grid}: too many combinations; lower grid=")
    floor = 1.0 - config.max_quality_drop
    best: tuple[float, float, float, tuple[float, ...]] = (0.0, 1.0, 0.0, tuple(float("nan") for _ in range(n_shallow)))
    points: list[tuple[float, float]] = []
    for combo in itertools.product(*cands):
        q, saved, se = _simulate(predicted, quality, torch.tensor(combo, dtype=torch.double), depths)
        points.append((saved, q))
        if q - config.margin_sigmas * se - optimism >= floor and (saved, q) > (best[0], best[1]):
            best = (saved, q, se, combo)
    saved, q, se, combo = best
    return [None if math.isnan(t) else t for t in combo], q, saved, se, _pareto(points)


def _pareto(points: list[tuple[float, float]]) -> list[dict[str, float]]:
    """The upper-left frontier: for each saving, the best quality nothing else beats at ≥ that saving."""
    frontier: list[dict[str, float]] = []
    best_q = -math.inf
    for saved, q in sorted(points, key=lambda p: (-p[0], -p[1])):
        if q > best_q + 1e-12:
            frontier.append({"layers_saved": saved, "quality": q})
            best_q = q
    return frontier[::-1]


# ---------------------------------------------------------------- save / load


def save_routed_depth(model: RoutedDepthModel, path: str | os.PathLike) -> Path:
    """Write the router, thresholds and each shallow path's weights to folder ``path`` (the full
    model is not written: pass it again to :func:`load_routed_depth`). Files are written
    atomically; ``routed_depth.json`` last, so a folder with it is complete."""
    from safetensors.torch import save

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    specs = []
    for i, p in enumerate(model.paths[:-1]):
        kept = (getattr(p, "accelkit_details", None) or {}).get("kept_layers")
        specs.append({"file": f"path{i}.safetensors", "kept_layers": kept})
        state = {k: v.detach().contiguous() for k, v in p.state_dict().items()}
        atomic_write_bytes(folder / specs[-1]["file"], save(state))
    router = {"weight": model.router.weight, "bias": model.router.bias, "feature_mean": model.feature_mean,
              "feature_scale": model.feature_scale}
    atomic_write_bytes(folder / "router.safetensors", save({k: v.detach().contiguous() for k, v in router.items()}))
    meta = {"format": _FORMAT, "names": model.names, "depths": model.depths, "thresholds": model.thresholds,
            "paths": specs, "details": {k: v for k, v in model.accelkit_details.items()
                                        if k not in ("route_histogram", "layers_saved_measured")}}
    atomic_write_bytes(folder / "routed_depth.json", json.dumps(meta, indent=1, default=str).encode())
    return folder


def _read_tensors(file: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(file))
    except Exception as exc:  # safetensors raises its own SafetensorError for truncated or foreign files
        raise SchemaError(f"{file} is not a readable safetensors file ({exc}); save the routed model again") from exc


def load_routed_depth(
    path: str | os.PathLike,
    full_model: nn.Module,
    build_path: Callable[[dict[str, Any]], nn.Module] | None = None,
    *,
    features: nn.Module | None = None,
) -> RoutedDepthModel:
    """Rebuild a saved routed model around ``full_model``. Shallow paths are rebuilt with
    ``build_path(spec)`` — by default a layer-subset student of ``full_model`` with the saved
    ``kept_layers`` — and their saved weights loaded."""
    from accelkit.techniques.distill import make_layer_student

    folder = Path(path)
    meta_file = folder / "routed_depth.json"
    if not meta_file.exists():
        raise SchemaError(f"{folder}: no routed_depth.json; save with save_routed_depth first")
    from accelkit.saving import resolve_inside

    try:
        meta = json.loads(meta_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SchemaError(f"{meta_file} is not valid JSON ({exc}); save the routed model again") from exc
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        meta = meta if isinstance(meta, dict) else {}
        raise SchemaError(f"{meta_file}: format {meta.get('format')!r}, expected {_FORMAT!r}")
    paths = []
    for spec in meta["paths"]:
        if build_path is not None:
            student = build_path(spec)
        elif spec.get("kept_layers") is not None:
            student = make_layer_student(full_model, spec["kept_layers"])
        else:
            raise SchemaError(f"{meta_file}: path {spec['file']} has no kept_layers; pass build_path= to rebuild it")
        file = resolve_inside(folder, spec["file"], meta_file)  # never a file outside the folder
        if not file.exists():
            raise SchemaError(f"{file} is missing: the saved routed model is incomplete; save it again")
        student.load_state_dict(_read_tensors(file))
        paths.append(student.eval())
    router = _read_tensors(folder / "router.safetensors")
    n_features = router["feature_mean"].shape[0]
    model = apply_routed_depth(full_model, paths, depths=meta["depths"], features=features,
                               n_features=n_features if features is not None else None, names=meta["names"])
    model.router.weight.data.copy_(router["weight"])
    model.router.bias.data.copy_(router["bias"])
    model.feature_mean.copy_(router["feature_mean"])
    model.feature_scale.copy_(router["feature_scale"])
    model.thresholds = meta["thresholds"]
    model.accelkit_details = meta.get("details", {})
    return model


# Shallow paths for the router: layer-subset students distilled on the first 1,000 calibration
# sentences + stdlib docstring sentences, so the remaining calibration sentences are unseen by
# every path and the thresholds are chosen on honest per-row quality. Layer sets: the best 3-,
# 4- and 5-subsets by rank_layer_subsets (untrained cosine 0.70, 0.84, 0.93). The router is
# fitted on package docstring sentences no student saw (on the 589 calibration rows alone its
# rank correlation with the true quality was 0.35; on 4,000 docstring rows 0.47).
_ROUTED_BASE = tuple(
    SentenceDistillConfig(keep_layers=keep, epochs=6, lr=2e-4, token_weight=1.0,
                          extra_sentences="stdlib-docstrings", dropout=False, train_sentences=1000)
    for keep in ((0, 4, 5), (0, 2, 4, 5), (0, 1, 3, 4, 5))
)


def _continued(base: SentenceDistillConfig) -> SentenceDistillConfig:
    # one more pass with 30,000 package docstring sentences added (none of the router's)
    return SentenceDistillConfig(keep_layers=base.keep_layers, epochs=1, lr=1e-4, token_weight=1.0,
                                 extra_sentences="stdlib-docstrings+package-docstrings-train", dropout=False,
                                 train_sentences=1000, init_from=base.to_dict())


ROUTED_STUDENTS = (_ROUTED_BASE[0], _continued(_ROUTED_BASE[1]), _continued(_ROUTED_BASE[2]))
ROUTED_DEPTH_PRESETS: dict[str, dict[str, Any]] = {
    "sentence-embedding": {
        "students": ROUTED_STUDENTS,
        # mean cosine ≥ 0.98 on the held-out calibration sentences less two standard errors and
        # less the optimism of choosing thresholds on them (5-fold), instead of a fixed margin.
        # Two standard errors alone: calibration 0.9811, evaluation 0.9797 (BENCHMARKS.md)
        "config": RoutedDepthConfig(max_quality_drop=0.02, margin_sigmas=2.0, validate_folds=5),
        "router_sentences": ("package-docstrings-heldout", 8000),
        "batch_size": 64,
    },
}


def router_calibration_data(workload: Workload, students: tuple[SentenceDistillConfig, ...]) -> list[str]:
    """The calibration sentences no student trained on: those after the largest ``train_sentences``."""
    counts = [s.train_sentences for s in students]
    if None in counts:
        raise ConfigError("a routed student trains on every calibration sentence (train_sentences=None): "
                          "set train_sentences so some are left to fit the router on")
    rest = workload.calib_data()[max(counts):]  # type: ignore[type-var]
    if not rest:
        raise ConfigError(f"train_sentences={max(counts)} uses all calibration sentences: lower it")
    return rest


def build_routed_depth(
    model: nn.Module,
    workload: Workload,
    students: tuple[SentenceDistillConfig, ...],
    config: RoutedDepthConfig,
    *,
    router_sentences: tuple[str, int] | None = None,
    batch_size: int = 64,
    use_cache: bool = True,
    progress=None,
) -> RoutedDepthModel:
    """Distil (or load cached) shallow students, fit the router (on ``router_sentences``: a
    named extra text and how many of its sentences, else cross-fitted), and choose thresholds
    on the calibration sentences none of the students trained on. Cached under
    ``cache_dir()/routed_depth``."""
    from accelkit.techniques._artifacts import (
        cached_artifact,
        data_fingerprint,
        weights_fingerprint,
    )

    router_data = list(workload.unlabelled_text(router_sentences[0])[: router_sentences[1]]) if router_sentences else None
    fields = {"students": [s.cache_key() for s in students], "config": config.to_dict(),
              "weights": weights_fingerprint(model), "router_data": data_fingerprint(router_data or ())}
    return cached_artifact("routed_depth", workload.name, fields, use_cache=use_cache,
                           build=lambda: _fit_routed_depth(model, workload, students, config, router_data, batch_size,
                                                           progress),
                           load=lambda folder: load_routed_depth(folder, model),
                           save=lambda routed, folder: save_routed_depth(routed, folder))


def _fit_routed_depth(model: nn.Module, workload: Workload, students: tuple[SentenceDistillConfig, ...],
                      config: RoutedDepthConfig, router_data: list[str] | None, batch_size: int,
                      progress: Any) -> RoutedDepthModel:
    from accelkit.techniques._workload_kinds import input_batches
    from accelkit.techniques.distill import cached_sentence_student

    paths = [cached_sentence_student(workload, model, s) for s in students]
    routed = apply_routed_depth(model, paths)
    data = router_calibration_data(workload, students)
    result = calibrate_router(
        routed, input_batches(workload, data, batch_size), config, progress=progress,
        router_batches=input_batches(workload, router_data, batch_size) if router_data else None,
    )
    routed.accelkit_details = {
        "paths": [{"name": n, "layers": d} for n, d in zip(routed.names, routed.depths, strict=True)],
        "students": [s.to_dict() for s in students],
        "calibration": {k: v for k, v in result.to_dict().items() if k != "curve"},
        "tradeoff_curve": result.curve,
        "calib_items": len(data),
        "router_items": len(router_data) if router_data else len(data),
    }
    return routed


@register_technique(
    "routed-depth",
    group="structure",
    description="a router reading only the token embeddings sends each sentence to a distilled 3-, 4- or "
    "5-layer student or the full model, thresholds calibrated to the quality budget",
    needs=("text", "sentence-embedding", "encoder-blocks", "unlabelled-text"),
    produces="dynamic",
    expensive=True,
    saveable=False,  # a data-dependent router over students: saved by its own save_routed_depth
)
def _routed_depth(model: nn.Module, ctx: BuildContext) -> Built:
    preset = require_preset(ROUTED_DEPTH_PRESETS, "routed-depth", ctx.workload)
    config = preset["config"].to_dict()
    if ctx.max_quality_drop is not None:  # its own confidence margin (margin_sigmas) stands in for a fixed one
        config["max_quality_drop"] = ctx.max_quality_drop
    routed = build_routed_depth(model, ctx.workload, preset["students"], RoutedDepthConfig.from_dict(config),
                                router_sentences=preset.get("router_sentences"), batch_size=preset["batch_size"])
    routed.reset_stats()
    return Built(routed, ctx.settings, dict(routed.accelkit_details))
