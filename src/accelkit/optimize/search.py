"""``optimize``: search every technique under a quality budget and keep the fastest faithful plan.

Screening runs on calibration items that look like the held-out data (``Workload.screen_data``:
for text, the same length distribution), three interleaved rounds per candidate against the
baseline. Plans grow one step at a time from candidates within budget, only in compositions
the descriptors allow. Finalists and every plan one step shorter are then measured side by
side on the held-out data the search never looked at; a step stays in the chosen plan only
when it is faster than the plan without it by more than the measured spread of the pair
ratios (Occam's rule), and ``search.ablation`` shows that comparison.

The time budget bounds the whole run: the final measurement's cost is estimated from the
screening passes and reserved (at least a minute) before any screening, a candidate whose
last build on this machine took longer than the time left is skipped, and a resumed run
spends only what the earlier runs left.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from accelkit.bench import SearchOptions, bench
from accelkit.errors import ConfigError
from accelkit.optimize.config import OptimizeConfig
from accelkit.optimize.final import FinalRun
from accelkit.optimize.objective import objective_score
from accelkit.optimize.plans import Plan, drop_one_step
from accelkit.optimize.screening import KeptModels, Screening, fit_screen_data
from accelkit.optimize.state import BuildTimes, Clock, SearchState
from accelkit.quality_floors import floors_text
from accelkit.report.results import Results, VariantResult, check_writable, write_text_atomic
from accelkit.techniques.registry import (
    BASELINE,
    Built,
    composition_error,
    get_technique,
    list_techniques,
    unavailable_reason,
)
from accelkit.variants import list_variants
from accelkit.workloads import Workload

__all__ = ["OptimizeConfig", "OptimizeResult", "Shipped", "choose_plan", "optimize", "objective_score",
           "ship_model", "step_gain"]


@dataclass(frozen=True)
class Shipped:
    """What the model folder holds: ``name``, the plan saved (None: not even the baseline could
    be), ``plan`` its steps as applied, and ``refused``: each plan ranked before it that could not
    be saved, with why, in the order tried."""

    name: str | None
    plan: list[dict[str, Any]] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "applied": list(self.plan), "refused": dict(self.refused)}


@dataclass
class OptimizeResult:
    best: str
    message: str
    results: Results
    search: list[dict] = field(default_factory=list)
    out_dir: Path | None = None
    ablation: list[dict] = field(default_factory=list)
    elapsed_s: float = 0.0
    shipped: Shipped | None = None  # what out_dir/model holds (``best``, unless its model cannot be saved)
    # seconds spent by phase, and what the final run was expected to take: where an overrun went
    timing: dict[str, float] = field(default_factory=dict)


def step_gain(plan: VariantResult, without: VariantResult) -> tuple[float, float] | None:
    """(median, spread) of plan's per-round speed over ``without``'s in one interleaved run.

    Both were timed in the same rounds against the same baseline, so round r's ratio is
    plan_ratio[r] / without_ratio[r]; spread is half the range of those ratios.
    """
    a, b = plan.pair_ratios or [], without.pair_ratios or []
    ratios = [x / y for x, y in zip(a, b, strict=False) if y]
    if not ratios:
        return None
    return statistics.median(ratios), (max(ratios) - min(ratios)) / 2


def _earns_its_keep(plan: VariantResult, without: VariantResult, objective: str) -> bool:
    if objective in ("memory", "size"):
        a, b = objective_score(plan, objective), objective_score(without, objective)
        return bool(a and b and a > b * 1.01)
    gain = step_gain(plan, without)
    return gain is not None and gain[0] - 1 > gain[1]


def choose_plan(
    final: Results, objective: str, min_gain: float, refused: Collection[str] = ()
) -> tuple[VariantResult, list[dict]]:
    """The best plan within budget that survives Occam's rule, and its ablation rows.

    Starting from the best-scoring plan, a plan with one step fewer replaces it whenever the
    dropped step does not beat the measured spread; a single must beat the baseline by
    ``min_gain`` and by its own spread. ``refused``: plans never chosen (their models cannot be
    saved). Returns (chosen variant, ablation of the chosen plan).
    """
    by_name = {v.name: v for v in final.variants}
    base = by_name[final.baseline]

    def ok(v: VariantResult | None) -> bool:
        return v is not None and v.within_budget and v.name not in refused

    within = [v for v in final.variants if v.name != final.baseline and ok(v)]
    within.sort(key=lambda v: objective_score(v, objective) or 0, reverse=True)
    for candidate in within:
        current = candidate
        while True:
            subs = [by_name.get(p.name if p.steps else final.baseline) for p in drop_one_step(Plan.parse(current.name))]
            weaker = [s for s in subs if ok(s) and s.name != final.baseline and not _earns_its_keep(current, s, objective)]
            if not weaker or len(Plan.parse(current.name).steps) < 2:
                break
            current = max(weaker, key=lambda v: objective_score(v, objective) or 0)
        beats_base = (objective_score(current, objective) or 0) > (objective_score(base, objective) or 0) * min_gain
        if beats_base and (objective in ("memory", "size") or _earns_its_keep(current, base, objective)):
            return current, _ablation(current, by_name, final.baseline, objective)
    return base, []


def _ablation(chosen: VariantResult, by_name: dict[str, VariantResult], baseline: str, objective: str) -> list[dict]:
    rows = []
    for step, sub in zip(Plan.parse(chosen.name).steps, drop_one_step(Plan.parse(chosen.name)), strict=True):
        name = sub.name if sub.steps else baseline
        v = by_name.get(name)
        row: dict[str, Any] = {"name": name, "dropped": step}
        if v is None and sub.steps and (composition_error(sub.steps) or "eager" not in
                                        get_technique(sub.steps[0]).accepts):
            # a serving step needs the runtime step before it: there is no plan without that step
            row["status"] = f"{sub.name} cannot run without {step}: it applies to what {step} builds"
        elif v is None:
            row["status"] = "not measured"
        else:
            gain = step_gain(chosen, v)
            row.update(speedup=v.speedup, quality=v.quality, quality_drop=v.quality_drop, error=v.error,
                       chosen_over_this=None if gain is None else round(gain[0], 4),
                       spread=None if gain is None else round(gain[1], 4),
                       earns_its_keep=_earns_its_keep(chosen, v, objective) if v.error is None else True)
        rows.append(row)
    return rows


def _singles(wl: Workload, config: OptimizeConfig) -> tuple[list[str], dict[str, str]]:
    """Single techniques to screen, cheap first, and {name: why not} for the ones left out."""
    names = [n for n in list_variants(wl) if n != BASELINE]
    skipped: dict[str, str] = {}
    # what the workload could use but this machine or install cannot run (OpenVINO that does not
    # load, bf16 that is not native): a row with the reason, never a silent gap
    offline = {t.name: why for t in list_techniques() if not t.missing(wl) and (why := unavailable_reason(t))}
    if config.candidates is not None:
        unknown = sorted(set(config.candidates) - set(names) - set(offline))
        if unknown:
            raise ConfigError(f"candidates {unknown} are not variants of {wl.name}; choose from {names}")
        names = [n for n in names if n in config.candidates]
        offline = {n: why for n, why in offline.items() if n in config.candidates}
    skipped.update({n: f"not offered here: {why}" for n, why in offline.items()})
    kept = []
    for n in names:
        tech = get_technique(n)
        if not tech.objectives:
            skipped[n] = "not tried: a reference row (bench shows it beside the default)"
        elif config.objective not in tech.objectives:
            skipped[n] = f"not tried: does not help {config.objective} (helps {', '.join(sorted(tech.objectives))})"
        elif tech.expensive and not config.include_expensive:
            skipped[n] = "not tried: trains (--no-expensive)"
        else:
            kept.append(n)
    # cheap first: expensive ones (training) only run while there is still time
    return sorted(kept, key=lambda n: (get_technique(n).expensive, n.startswith("compile"), n)), skipped


def optimize(config: OptimizeConfig, out_dir: str | Path, *, console: Console | None = None) -> OptimizeResult:
    """Search plans for ``config.workload`` and write model, plan.json, results.json, report.html."""
    from accelkit.outdir import OPTIMIZE_FILES, prepare_output_dir

    out_dir = Path(out_dir)
    # before the search: a folder with the user's files is refused now, not after an hour of work
    prepare_output_dir(out_dir, overwrite=config.overwrite, owned=OPTIMIZE_FILES)
    check_writable(out_dir / "plan.json")
    console = console or Console()
    state = SearchState(out_dir / "candidates.json", config)
    clock = Clock(config.time_budget_s, state.spent_before)
    wl = config.make_workload()
    batch_size = 1 if config.objective == "latency" else (config.batch_size or wl.default_batch_size)
    if state.records:
        console.print(f"resuming: {len(state.records)} candidates already measured in {state.path}, "
                      f"{state.spent_before:.0f}s of the {config.time_budget_s:.0f}s budget spent")
    model = wl.build_model()
    build_times = BuildTimes(wl.name)
    kept = KeptModels()
    # representative screening data: at least four batches, shaped like the held-out data
    limit = max(config.screen_limit or 0, 4 * batch_size)
    if state.records:  # a resumed search screens on the items it started with (a state saved before
        # the count was kept: the limit asked for, as then)
        state.screen_items = state.screen_items or limit
        screen_data = wl.screen_data(state.screen_items)
    else:
        screen_data, state.screen_items = fit_screen_data(wl, model, limit, batch_size, clock.left(), console)
    final_run = FinalRun(config, state, build_times, kept, wl.n_items(screen_data),
                         wl.n_items(wl.eval_data(config.eval_limit)))

    singles, left_out = _singles(wl, config)
    for name, why in left_out.items():
        state.note(name, why, replace=False)
    modifiers = [n for n in singles if "eager" not in get_technique(n).accepts]
    singles = [n for n in singles if n not in modifiers]
    cheap = [n for n in singles if not get_technique(n).expensive]
    expensive = [n for n in singles if get_technique(n).expensive]
    Screening(config, wl, model, batch_size, screen_data, state, kept, build_times, clock, final_run).run(
        cheap, expensive, modifiers, console)

    names, repeats = final_run.fit(clock.left())
    timing = {"budget_s": config.time_budget_s, "before_final_s": clock.elapsed(),
              "final_estimate_s": final_run.cost(names, repeats)}
    console.print(f"screened {len(state.records)} candidates; final on held-out data ({repeats} rounds): "
                  f"{', '.join(names) or 'baseline only'}")
    final_start = time.perf_counter()
    with console.status("final side-by-side measurement on held-out data") as status:
        final = bench(
            wl, names, batch_size=batch_size, repeats=repeats, limit=config.eval_limit,
            max_quality_drop=config.max_quality_drop, min_quality=config.min_quality, baseline_model=model,
            keep_built=True, progress=lambda m: status.update(f"final: {m}"),
            search=SearchOptions(objective=config.objective, prebuilt=dict(kept)),
        )
    timing["final_s"] = time.perf_counter() - final_start
    best, ablation = choose_plan(final, config.objective, config.min_gain)
    baseline = Built(model, wl.default_settings(batch_size))
    shipped = ship_model(final, config, wl, baseline, out_dir / "model")
    message = "\n".join(filter(None, (_message(best, final, config, wl), _shipped_line(best.name, shipped,
                                                                                    out_dir / "model"))))
    result = OptimizeResult(best.name, message, final, list(state.records.values()), out_dir, ablation,
                            shipped=shipped, timing=timing)
    chosen = final.built.get(best.name) if best.name != final.baseline else baseline
    timing["total_s"] = clock.elapsed()
    _write_outputs(result, config, chosen)
    result.elapsed_s = clock.elapsed()
    if result.elapsed_s > config.time_budget_s * 1.05:
        console.print(overrun_line(timing))
    state.save(clock)
    return result


def overrun_line(timing: dict[str, float]) -> str:
    """Where a search past its budget spent the time: screening, and the final run against what
    it was expected to take (``--eval-limit`` shortens the final run, which is never cut under two
    rounds of the finalist and its ablation)."""
    return (f"took {timing['total_s']:.0f}s of the {timing['budget_s']:.0f}s budget: screening "
            f"{timing['before_final_s']:.0f}s, the final run {timing['final_s']:.0f}s (expected "
            f"{timing['final_estimate_s']:.0f}s); --eval-limit shortens the final run")


def _message(best: VariantResult, final: Results, config: OptimizeConfig, wl: Workload) -> str:
    floors = f", {floors_text(config.min_quality)}" if config.min_quality else ""
    if best.name != final.baseline:
        return (f"best plan {best.name}: {best.speedup:.2f}× the baseline ({config.objective}), "
                f"{wl.primary_metric} drop {best.quality_drop:.4g} ≤ {config.max_quality_drop:g}{floors}")
    return (f"no plan beat the baseline by {config.min_gain:g}× and its own noise within a "
            f"{wl.primary_metric} drop of {config.max_quality_drop:g}{floors} on held-out data; "
            "returning the baseline")


def _shipped_line(best: str, shipped: Shipped, path: Path) -> str | None:
    """One line when the model folder does not hold the chosen plan: which plan it holds and why."""
    if shipped.name == best:
        return None
    reason = shipped.refused.get(best) or next(iter(shipped.refused.values()))
    why = f"{', '.join(shipped.refused)} cannot be saved ({reason})"
    if shipped.name is None:
        return f"no model saved to {path}: {why}"
    return f"saved {shipped.name} to {path}, the best plan that can be saved: {why}"


def ship_model(final: Results, config: OptimizeConfig, wl: Workload, baseline: Built, path: Path) -> Shipped:
    """Save to ``path`` the best plan of the final run whose model can be saved: the chosen plan,
    else ``choose_plan``'s choice among the rest once the refused ones are left out (the
    baseline when none of them beats it). Saves the models the final run measured, never
    building one a third time; a plan whose save raises ShipError is recorded, not raised."""
    from accelkit.outdir import SAVED_MODEL_FILES, foreign_files
    from accelkit.runtimes import ShipError
    from accelkit.saving import save

    refused: dict[str, str] = {}
    while True:
        best, _ = choose_plan(final, config.objective, config.min_gain, refused)
        built = baseline if best.name == final.baseline else final.built.get(best.name)
        if built is None:  # pragma: no cover - bench keeps every variant it measured
            raise ConfigError(f"the chosen plan {best.name!r} was not kept by the final run")
        try:
            save(built, path, workload=wl, overwrite=True)  # writes built.plan, configs and all
            return Shipped(best.name, built.plan, refused)
        except ShipError as exc:
            refused[best.name] = str(exc)
            if best.name == final.baseline:
                break
    if path.is_dir() and not foreign_files(path, SAVED_MODEL_FILES):
        shutil.rmtree(path)  # an earlier run's model would pass for this run's
    return Shipped(None, refused=refused)


def _write_outputs(result: OptimizeResult, config: OptimizeConfig, chosen: Built | None) -> None:
    out = result.out_dir
    plan = Plan.parse(result.best)
    shipped = result.shipped.to_dict() if result.shipped is not None else None
    payload = result.results.to_dict()
    payload["search"] = {"config": config.to_dict(), "best": result.best, "message": result.message,
                         "ablation": result.ablation, "candidates": result.search, "shipped": shipped,
                         "timing_s": {k: round(v, 1) for k, v in result.timing.items()}}
    write_text_atomic(out / "results.json", json.dumps(payload, indent=2, default=str))
    # the steps as the final run applied them, each with its config (what a self-tuning step chose)
    steps = chosen.plan if chosen is not None else []
    plan_doc = {"schema": "accelkit.plan/1", "workload": config.workload, "plan": {**plan.to_dict(), "applied": steps},
                "objective": config.objective, "max_quality_drop": config.max_quality_drop,
                "min_quality": config.min_quality, "batch_size": result.results.settings.get("batch_size"),
                "message": result.message, "shipped": shipped}
    write_text_atomic(out / "plan.json", json.dumps(plan_doc, indent=2))
    from accelkit.optimize.report import write_optimize_report

    write_optimize_report([result], out / "report.html")

