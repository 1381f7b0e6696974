"""``optimize``: search every technique under a quality budget and keep the fastest faithful plan.

Screening runs on the calibration split (cheap, two interleaved rounds per
candidate, each against the baseline); plans whose prefix fails the budget are
never extended. Finalists are then measured side by side on the held-out
evaluation data the search never looked at, and the best one within budget wins.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from accelkit.bench import bench
from accelkit.errors import ConfigError
from accelkit.optimize.plans import Plan, extend_plans
from accelkit.report.results import (
    Results,
    VariantResult,
    check_writable,
    describe_error,
    write_text_atomic,
)
from accelkit.variants import VARIANTS, list_variants
from accelkit.workloads import RunSettings, Workload, get_workload

__all__ = ["OptimizeConfig", "OptimizeResult", "optimize", "objective_score"]

_OBJECTIVES = ("throughput", "latency", "memory", "size")


@dataclass
class OptimizeConfig:
    """What to search for. ``max_quality_drop`` is in the workload's primary metric
    (minilm: cosine_mean, so 0.01 means cosine ≥ 0.99; digits: accuracy fraction)."""

    workload: str = "minilm"
    max_quality_drop: float = 0.01
    objective: str = "throughput"  # throughput at batch_size | latency at batch 1 | memory | size
    batch_size: int | None = None
    time_budget_s: float = 600.0
    screen_limit: int | None = 128
    eval_limit: int | None = None
    repeats: int = 5
    finalists: int = 4
    include_expensive: bool = True
    candidates: list[str] | None = None  # restrict the single techniques searched
    min_gain: float = 1.02  # a plan must beat the baseline by this factor, or noise could pick it
    max_steps: int = 4  # longest composition tried
    max_plans_per_length: int = 12  # compositions screened per length, best estimates first
    version: int = 1

    def __post_init__(self) -> None:
        if self.objective not in _OBJECTIVES:
            raise ConfigError(f"objective={self.objective!r}: expected one of {_OBJECTIVES}")
        if self.max_quality_drop < 0:
            raise ConfigError(f"max_quality_drop={self.max_quality_drop}: expected >= 0")
        if self.time_budget_s <= 0:
            raise ConfigError(f"time_budget={self.time_budget_s}s: expected a positive duration, e.g. 10m")
        if self.repeats < 1 or self.finalists < 1:
            raise ConfigError(f"repeats={self.repeats}, finalists={self.finalists}: expected >= 1")

    def to_dict(self) -> dict:
        return asdict(self)

    def search_key(self) -> dict:
        """Fields that must match for screened candidates to be reused on resume."""
        return {k: v for k, v in self.to_dict().items() if k not in ("time_budget_s", "finalists", "repeats", "eval_limit")}


@dataclass
class OptimizeResult:
    best: str
    message: str
    results: Results
    search: list[dict] = field(default_factory=list)
    out_dir: Path | None = None


def objective_score(rec: VariantResult | dict, objective: str) -> float | None:
    """Higher is better: speed-up for throughput/latency, inverse MB for memory/size."""
    get = rec.get if isinstance(rec, dict) else lambda k: getattr(rec, k)
    if get("error"):
        return None
    if objective in ("throughput", "latency"):
        return get("speedup")
    value = get("peak_memory_mb" if objective == "memory" else "size_mb")
    return 1.0 / value if value else None


def _singles(wl: Workload, config: OptimizeConfig) -> list[str]:
    names = [n for n in list_variants(wl) if n != "baseline"]
    if config.candidates is not None:
        unknown = sorted(set(config.candidates) - set(names))
        if unknown:
            raise ConfigError(f"candidates {unknown} are not variants of {wl.name}; choose from {names}")
        names = [n for n in names if n in config.candidates]
    if not config.include_expensive:
        names = [n for n in names if not VARIANTS[n].expensive]
    # cheap first: expensive ones (training) only run while there is still time
    return sorted(names, key=lambda n: (VARIANTS[n].expensive, n.startswith("compile"), n))


def _estimate(plan: Plan, screened: dict[str, dict], objective: str) -> float:
    score = 1.0
    for step in plan.steps:
        score *= objective_score(screened.get(step, {}), objective) or 1.0
    return score


def _load_state(path: Path, config: OptimizeConfig) -> dict[str, dict]:
    if not path.is_file():
        return {}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}
    if state.get("key") != config.search_key():
        return {}  # a different search: start over rather than mix results
    return {rec["name"]: rec for rec in state.get("screened", [])}


def _rejection(rec: dict, budget: float) -> str | None:
    if rec.get("error"):
        return f"failed: {rec['error']}"
    if rec.get("quality_drop") is not None and rec["quality_drop"] > budget:
        return f"quality drop {rec['quality_drop']:.4g} > budget {budget:g}"
    return None


def optimize(config: OptimizeConfig, out_dir: str | Path, *, console: Console | None = None) -> OptimizeResult:
    """Search plans for ``config.workload`` and write model, plan.json, results.json, report.html."""
    out_dir = Path(out_dir)
    check_writable(out_dir / "plan.json")
    console = console or Console()
    wl = get_workload(config.workload)
    batch_size = 1 if config.objective == "latency" else (config.batch_size or wl.default_batch_size)
    state_path = out_dir / "candidates.json"
    screened = _load_state(state_path, config)
    if screened:
        console.print(f"resuming: {len(screened)} candidates already measured in {state_path}")
    deadline = time.monotonic() + config.time_budget_s
    model = wl.build_model()

    def save_state() -> None:
        payload = {"key": config.search_key(), "screened": list(screened.values())}
        write_text_atomic(state_path, json.dumps(payload, indent=1, default=str))

    def best_so_far() -> str:
        ok = [r for r in screened.values() if not _rejection(r, config.max_quality_drop)]
        scored = [(objective_score(r, config.objective) or 0, r["name"]) for r in ok]
        return max(scored)[1] if scored else "baseline"

    def screen(name: str, progress: Progress, task) -> None:
        if name in screened:
            return
        if time.monotonic() > deadline:
            screened[name] = {"name": name, "status": "skipped: time budget spent", "error": None, "skipped": True}
            return
        progress.update(task, description=f"[bold]{name}[/bold] (best so far: {best_so_far()})")
        try:
            res = bench(
                wl, [name], batch_size=batch_size, repeats=2, warmup=0, limit=config.screen_limit,
                max_quality_drop=config.max_quality_drop, roofline=False, baseline_model=model, split="calib",
                memory=config.objective == "memory", flops=False,
            )
            rec = res.variant(name).to_dict()
        except Exception as exc:  # a crashing metric or candidate is a result; the search goes on
            rec = VariantResult(name, error=describe_error(exc)).to_dict()
        rec["status"] = _rejection(rec, config.max_quality_drop) or "within budget"
        screened[name] = rec
        save_state()

    singles = _singles(wl, config)
    cheap = [n for n in singles if not VARIANTS[n].expensive]
    expensive = [n for n in singles if VARIANTS[n].expensive]
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        total = 0
        task = progress.add_task("screening", total=total)

        def screen_all(names: list[str]) -> None:
            nonlocal total
            total += len(names)
            progress.update(task, total=total)
            for name in names:
                screen(name, progress, task)
                progress.advance(task)

        def grow(passing: list[str]) -> None:
            frontier = [Plan((n,)) for n in passing]
            for _length in range(2, config.max_steps + 1):
                # most promising first: the product of the steps' screened speed-ups
                plans = sorted(extend_plans(frontier, passing), key=lambda p: -_estimate(p, screened, config.objective))
                plans = plans[: config.max_plans_per_length]
                screen_all([p.name for p in plans])
                frontier = [p for p in plans if screened[p.name].get("status") == "within budget"]
                if not frontier:
                    break

        def passing(names: list[str]) -> list[str]:
            return [n for n in names if screened[n].get("status") == "within budget"]

        # Cheap techniques and their compositions first; techniques that train (distillation,
        # fine-tuning) only afterwards, while time remains, then compositions with them too.
        screen_all(cheap)
        grow(passing(cheap))
        if expensive:
            screen_all(expensive)
            grow(passing(cheap + expensive))

    ok = [r for r in screened.values() if r.get("status") == "within budget"]
    ok.sort(key=lambda r: objective_score(r, config.objective) or 0, reverse=True)
    finalists = [r["name"] for r in ok[: config.finalists]]
    console.print(f"screened {len(screened)} candidates; finalists on held-out data: {finalists or 'none'}")
    with console.status("final side-by-side measurement on held-out data") as status:
        final = bench(
            wl, finalists, batch_size=batch_size, repeats=config.repeats, limit=config.eval_limit,
            max_quality_drop=config.max_quality_drop, baseline_model=model,
            progress=lambda m: status.update(f"final: {m}"),
        )
    within = [v for v in final.variants if v.name != "baseline" and v.meets_budget and v.error is None]
    within.sort(key=lambda v: objective_score(v, config.objective) or 0, reverse=True)
    base_score = objective_score(final.variant("baseline"), config.objective) or 0
    if within and (objective_score(within[0], config.objective) or 0) > base_score * config.min_gain:
        best = within[0]
        message = (f"best plan {best.name}: {best.speedup:.2f}× the baseline ({config.objective}), "
                   f"{wl.primary_metric} drop {best.quality_drop:.4g} ≤ {config.max_quality_drop:g}")
    else:
        best = final.variant("baseline")
        message = (f"no plan beat the baseline by {config.min_gain:g}× within a {wl.primary_metric} drop of "
                   f"{config.max_quality_drop:g} on held-out data; returning the baseline")
    result = OptimizeResult(best.name, message, final, list(screened.values()), out_dir)
    _write_outputs(result, config, wl, model)
    return result


def _write_outputs(result: OptimizeResult, config: OptimizeConfig, wl: Workload, model: Any) -> None:
    out = result.out_dir
    plan = Plan.parse(result.best)
    payload = result.results.to_dict()
    payload["search"] = {"config": config.to_dict(), "best": result.best, "message": result.message,
                         "candidates": result.search}
    write_text_atomic(out / "results.json", json.dumps(payload, indent=2, default=str))
    plan_doc = {"schema": "accelkit.plan/1", "workload": config.workload, "plan": plan.to_dict(),
                "objective": config.objective, "max_quality_drop": config.max_quality_drop,
                "batch_size": result.results.settings.get("batch_size"), "message": result.message}
    write_text_atomic(out / "plan.json", json.dumps(plan_doc, indent=2))
    settings = RunSettings(batch_size=result.results.settings.get("batch_size") or wl.default_batch_size)
    _save_model(result.best, wl, config.workload, model, settings, out / "model")
    from accelkit.optimize.report import write_optimize_report

    write_optimize_report([result], out / "report.html")


def _save_model(name: str, wl: Workload, workload_name: str, model: Any, settings: RunSettings, path: Path) -> None:
    """Rebuild the chosen plan and save it so that ``accelkit.load(path)`` restores it."""
    from accelkit.saving import save
    from accelkit.variants import build_variant

    built = (model, settings) if name == "baseline" else build_variant(name, model, settings, wl)[:2]
    save(built, path, plan=None if name == "baseline" else name, workload=workload_name, overwrite=True)
