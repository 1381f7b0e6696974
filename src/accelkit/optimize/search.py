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
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from accelkit.bench import bench
from accelkit.errors import ConfigError
from accelkit.optimize.plans import Plan, drop_one_step, extend_plans
from accelkit.quality_floors import check_quality_floors, floors_text
from accelkit.report.results import (
    Results,
    VariantResult,
    check_writable,
    describe_error,
    write_text_atomic,
)
from accelkit.techniques.registry import BASELINE, Built, composition_error, get_technique
from accelkit.variants import list_variants
from accelkit.workloads import Workload, cache_dir

__all__ = ["OptimizeConfig", "OptimizeResult", "choose_plan", "optimize", "objective_score", "step_gain"]

_OBJECTIVES = ("throughput", "latency", "memory", "size")
# What one final-measurement round is assumed to cost before any screening has timed a pass.
_MIN_RESERVE_S = 60.0
# A technique never built on this machine: assume a training run (expensive) or a quick build.
_UNKNOWN_BUILD_S = {True: 600.0, False: 20.0}
_KEEP_BUILT = 12  # screened models kept in memory for the final run, best first
_SCREEN_CHUNK = 3  # candidates screened side by side in one run, sharing the baseline's passes
# interleaved timing rounds per screening run; no warm-up round: each candidate's quality pass,
# just before the rounds, already warmed it (and the baseline's reference pass warmed the baseline)
_SCREEN_ROUNDS = 3


@dataclass
class OptimizeConfig:
    """What to search for. ``max_quality_drop`` is in the workload's primary metric
    (minilm: cosine_mean, so 0.01 means cosine ≥ 0.99; digits: accuracy fraction).
    ``min_quality`` adds floors on any quality metric, e.g. ``{"cosine_min": 0.97}``: the worst
    sentence, which a mean can hide; a plan below a floor is out of budget as one over the drop."""

    workload: str = "minilm"
    max_quality_drop: float = 0.01
    objective: str = "throughput"  # throughput at batch_size | latency at batch 1 | memory | size
    batch_size: int | None = None
    time_budget_s: float = 600.0
    screen_limit: int | None = 128  # at least 4 batches are screened whatever this says
    eval_limit: int | None = None
    repeats: int = 5
    finalists: int = 4
    include_expensive: bool = True
    candidates: list[str] | None = None  # restrict the single techniques searched
    min_gain: float = 1.02  # a plan must beat the baseline by this factor, or noise could pick it
    max_steps: int = 4  # longest composition tried
    max_plans_per_length: int = 12  # compositions screened per length, best estimates first
    overwrite: bool = False  # write into an out_dir holding other files (they are kept)
    # the user's own model and data (``--model``/``--data``): workload_from_model's arguments
    model: dict | None = None
    min_quality: dict[str, float] | None = None  # floors on quality metrics: {"cosine_min": 0.97}
    version: int = 3  # 3: speed-ups against the default run (sentence-transformers' batching)

    def __post_init__(self) -> None:
        if self.objective not in _OBJECTIVES:
            raise ConfigError(f"objective={self.objective!r}: expected one of {_OBJECTIVES}")
        if not (isinstance(self.max_quality_drop, (int, float)) and math.isfinite(self.max_quality_drop)) \
                or self.max_quality_drop < 0:
            raise ConfigError(f"max_quality_drop={self.max_quality_drop}: expected a finite number >= 0, e.g. 0.01")
        self.min_quality = check_quality_floors(self.min_quality)
        if not math.isfinite(self.time_budget_s) or self.time_budget_s <= 0:
            raise ConfigError(f"time_budget={self.time_budget_s}s: expected a positive duration, e.g. 10m")
        if self.repeats < 1 or self.finalists < 1:
            raise ConfigError(f"repeats={self.repeats}, finalists={self.finalists}: expected >= 1")

    def to_dict(self) -> dict:
        return asdict(self)

    def search_key(self) -> dict:
        """Fields that must match for screened candidates to be reused on resume (with the
        user's data file's checksum: the same path with other contents is another search)."""
        key = {k: v for k, v in self.to_dict().items()
               if k not in ("time_budget_s", "finalists", "repeats", "eval_limit", "overwrite")}
        if self.model and self.model.get("data"):
            key["data_sha256"] = _path_digest(Path(self.model["data"]))
        return key

    def make_workload(self) -> Workload:
        """The workload searched: the user's ``model`` on their data, else the named one."""
        from accelkit.workloads import resolve_workload

        return resolve_workload(self.workload, self.model)


def _path_digest(path: Path) -> str | None:
    import hashlib

    if not path.exists():
        return None
    h = hashlib.sha256()
    for f in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.relative_to(path).as_posix().encode() if f != path else b"")
        h.update(f.read_bytes())
    return h.hexdigest()


@dataclass
class OptimizeResult:
    best: str
    message: str
    results: Results
    search: list[dict] = field(default_factory=list)
    out_dir: Path | None = None
    ablation: list[dict] = field(default_factory=list)
    elapsed_s: float = 0.0


def objective_score(rec: VariantResult | dict, objective: str) -> float | None:
    """Higher is better: speed-up for throughput/latency, inverse MB for memory/size."""
    get = rec.get if isinstance(rec, dict) else lambda k: getattr(rec, k)
    if get("error"):
        return None
    if objective in ("throughput", "latency"):
        return get("speedup")
    value = get("peak_memory_mb" if objective == "memory" else "size_mb")
    return 1.0 / value if value else None


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
    final: Results, objective: str, min_gain: float
) -> tuple[VariantResult, list[dict]]:
    """The best plan within budget that survives Occam's rule, and its ablation rows.

    Starting from the best-scoring plan, a plan with one step fewer replaces it whenever the
    dropped step does not beat the measured spread; a single must beat the baseline by
    ``min_gain`` and by its own spread. Returns (chosen variant, ablation of the chosen plan).
    """
    by_name = {v.name: v for v in final.variants}
    base = by_name[final.baseline]

    def ok(v: VariantResult | None) -> bool:
        return v is not None and v.error is None and (v.meets_budget is not False)

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
    if config.candidates is not None:
        unknown = sorted(set(config.candidates) - set(names))
        if unknown:
            raise ConfigError(f"candidates {unknown} are not variants of {wl.name}; choose from {names}")
        names = [n for n in names if n in config.candidates]
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


def _estimate(plan: Plan, screened: dict[str, dict], objective: str) -> float:
    score = 1.0
    for step in plan.steps:
        score *= objective_score(screened.get(step, {}), objective) or 1.0
    return score


def _load_state(path: Path, config: OptimizeConfig) -> tuple[dict[str, dict], float]:
    """Screened candidates and the seconds earlier runs spent, when the search key matches."""
    if not path.is_file():
        return {}, 0.0
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not a readable search state ({exc}); delete it to start over") from exc
    if not isinstance(state, dict) or not isinstance(state.get("screened", []), list):
        raise ConfigError(f"{path} is not a search state written by accelkit optimize; delete it to start over")
    if state.get("key") != config.search_key():
        return {}, 0.0  # a different search: start over rather than mix results
    recs = [r for r in state.get("screened", []) if isinstance(r, dict) and isinstance(r.get("name"), str)]
    spent = state.get("spent_s", 0.0)
    return {r["name"]: r for r in recs}, float(spent) if isinstance(spent, (int, float)) else 0.0


def _rejection(rec: dict, budget: float) -> str | None:
    if rec.get("error"):
        return f"failed: {rec['error']}"
    if rec.get("quality_drop") is not None and rec["quality_drop"] > budget:
        return f"quality drop {rec['quality_drop']:.4g} > budget {budget:g}"
    missed = (rec.get("details") or {}).get("floors_missed")  # bench checked the floors (min_quality)
    if missed:
        return f"below the quality floor: {'; '.join(missed)}"
    return None


class _BuildTimes:
    """Each technique's last build time on this machine, so the search can skip one that would
    overrun the time left (a training run cannot be stopped half-way)."""

    def __init__(self, workload: str) -> None:
        self.path = cache_dir() / "optimize" / "build_times.json"
        self.workload = workload
        try:
            self.times = json.loads(self.path.read_text()) if self.path.is_file() else {}
        except (ValueError, OSError):
            self.times = {}
        if not isinstance(self.times, dict):
            self.times = {}

    def expected(self, name: str) -> float:
        steps = Plan.parse(name).steps
        total = 0.0
        for s in steps:
            t = self.times.get(f"{self.workload}/{s}")
            total += t if isinstance(t, (int, float)) else _UNKNOWN_BUILD_S[get_technique(s).expensive]
        return total

    def known(self, name: str) -> bool:
        return all(f"{self.workload}/{s}" in self.times for s in Plan.parse(name).steps)

    def record(self, name: str, seconds: float | None) -> None:
        steps = Plan.parse(name).steps
        if seconds is None or len(steps) != 1:
            return
        self.times[f"{self.workload}/{steps[0]}"] = round(seconds, 2)
        try:
            write_text_atomic(self.path, json.dumps(self.times, indent=1, sort_keys=True))
        except OSError:  # a read-only cache only costs the estimate
            pass


def optimize(config: OptimizeConfig, out_dir: str | Path, *, console: Console | None = None) -> OptimizeResult:
    """Search plans for ``config.workload`` and write model, plan.json, results.json, report.html."""
    started = time.monotonic()
    from accelkit.outdir import OPTIMIZE_FILES, prepare_output_dir

    out_dir = Path(out_dir)
    # before the search: a folder with the user's files is refused now, not after an hour of work
    prepare_output_dir(out_dir, overwrite=config.overwrite, owned=OPTIMIZE_FILES)
    check_writable(out_dir / "plan.json")
    console = console or Console()
    wl = config.make_workload()
    batch_size = 1 if config.objective == "latency" else (config.batch_size or wl.default_batch_size)
    state_path = out_dir / "candidates.json"
    screened, spent_before = _load_state(state_path, config)
    if screened:
        console.print(f"resuming: {len(screened)} candidates already measured in {state_path}, "
                      f"{spent_before:.0f}s of the {config.time_budget_s:.0f}s budget spent")
    deadline = started + max(0.0, config.time_budget_s - spent_before)
    model = wl.build_model()
    build_times = _BuildTimes(wl.name)
    built: dict[str, Built] = {}  # screened models within budget, reused by the final run
    built_score: dict[str, float] = {}

    # representative screening data: at least four batches, shaped like the held-out data
    screen_items = max(config.screen_limit or 0, 4 * batch_size)
    screen_data = wl.screen_data(screen_items)
    n_screen = wl.n_items(screen_data)
    n_eval = wl.n_items(wl.eval_data(config.eval_limit))

    def time_left() -> float:
        return deadline - time.monotonic()

    def save_state() -> None:
        payload = {"key": config.search_key(), "screened": list(screened.values()),
                   "spent_s": round(spent_before + time.monotonic() - started, 1)}
        write_text_atomic(state_path, json.dumps(payload, indent=1, default=str))

    def passing_records() -> list[dict]:
        ok = [r for r in screened.values() if r.get("status") == "within budget"]
        return sorted(ok, key=lambda r: objective_score(r, config.objective) or 0, reverse=True)

    def final_names(n_finalists: int | None = None) -> list[str]:
        finalists = [r["name"] for r in passing_records()[: n_finalists or config.finalists]]
        names = list(finalists)
        for f in finalists:  # every plan one step shorter, measured in the same run for the ablation
            for sub in drop_one_step(Plan.parse(f)):
                if sub.steps and sub.name not in names and composition_error(sub.steps) is None:
                    names.append(sub.name)
        return names

    def final_cost(names: list[str], repeats: int) -> float:
        """Seconds the final run will take: per variant a quality, memory and FLOP pass plus the
        timing rounds, scaled from the screening passes to the held-out item count."""
        base_ms = next((r.get("baseline_pass_ms") for r in screened.values() if r.get("baseline_pass_ms")), None)
        if base_ms is None:
            return _MIN_RESERVE_S
        scale = n_eval / max(n_screen, 1) / 1e3
        per_pass = [base_ms * scale] + [((screened.get(n) or {}).get("pass_ms") or {}).get("p50", base_ms) * scale
                                        for n in names]
        builds = sum(0.0 if n in built else build_times.expected(n) for n in names)
        # per variant: a quality pass (FLOPs counted in it), a memory pass, a warm-up and the rounds,
        # and one pass of margin: a pass on held-out data is not exactly the scaled screening one
        # + the two roofline measurements (a growing GEMM per kernel, ~8 s) and the reference passes
        return builds + (repeats + 4) * sum(per_pass) + 20.0

    def reserve() -> float:
        # the smallest final run: the best plan so far and its ablation, two rounds; the final run
        # takes more finalists and rounds when screening leaves the time
        return max(_MIN_RESERVE_S, final_cost(final_names(1), min(config.repeats, 2)))

    def best_so_far() -> str:
        ok = passing_records()
        return ok[0]["name"] if ok else BASELINE

    def keep_built(name: str, b: Built, score: float) -> None:
        built[name], built_score[name] = b, score
        if len(built) > _KEEP_BUILT:
            worst = min(built, key=built_score.__getitem__)
            built.pop(worst)
            built_score.pop(worst)

    def screening_pass_s() -> float:
        """One screening pass of the baseline, the slowest candidate there is (0 before any)."""
        ms = next((r.get("baseline_pass_ms") for r in screened.values() if r.get("baseline_pass_ms")), None)
        return (ms or 0.0) / 1e3

    def skip(name: str, why: str) -> None:
        screened[name] = {"name": name, "status": f"skipped: {why}", "error": None, "skipped": True}

    def screen_chunk(names: list[str], progress: Progress, task, phase: str) -> None:
        """Screen up to _SCREEN_CHUNK candidates in one interleaved run: they share the baseline's
        passes, which dominate screening when the baseline is the slow one."""
        chosen = []
        for name in names:
            left = time_left() - reserve() - screening_pass_s() * _SCREEN_ROUNDS * (2 + len(chosen))
            expected = build_times.expected(name) + sum(build_times.expected(n) for n in chosen)
            if left <= 0:
                skip(name, "time budget spent")
            elif expected > left:
                known = build_times.known(name)
                skip(name, f"{'its last build here took' if known else 'never built here: assumed'} "
                           f"{build_times.expected(name):.0f}s, {max(left, 0):.0f}s left")
            else:
                chosen.append(name)
        if not chosen:
            return
        progress.update(task, description=f"{phase}: [bold]{escape(', '.join(chosen))}[/bold] · best so far "
                                          f"{escape(best_so_far())} · {max(time_left(), 0):.0f}s left")
        failure = None
        try:
            res = bench(
                wl, chosen, batch_size=batch_size, repeats=_SCREEN_ROUNDS, warmup=0, data=screen_data,
                max_quality_drop=config.max_quality_drop, min_quality=config.min_quality, roofline=False,
                baseline_model=model, split="calib",
                memory=config.objective == "memory", flops=False, keep_built=True, objective=config.objective,
            )
        except Exception as exc:  # a crashing metric is a result for every candidate of the run
            from accelkit.quiet import log_exception

            log_exception(exc, f"candidates {chosen}")
            res, failure = None, describe_error(exc)
        for name in chosen:
            if res is None:
                rec = VariantResult(name, error=failure).to_dict()
            else:
                rec = res.variant(name).to_dict()
                rec["baseline_pass_ms"] = (res.variant(res.baseline).pass_ms or {}).get("p50")
                build_times.record(name, rec.get("build_s"))
            rec["status"] = _rejection(rec, config.max_quality_drop) or "within budget"
            if res is not None and rec["status"] == "within budget" and name in res.built:
                keep_built(name, res.built[name], objective_score(rec, config.objective) or 0)
            screened[name] = rec
        save_state()

    singles, left_out = _singles(wl, config)
    for name, why in left_out.items():
        screened.setdefault(name, {"name": name, "status": why, "error": None, "skipped": True})
    # steps that only apply to what another step built (parallel streams on an ORT session): never
    # screened alone, tried as the last step of compositions whose model they accept
    modifiers = [n for n in singles if "eager" not in get_technique(n).accepts]
    singles = [n for n in singles if n not in modifiers]
    cheap = [n for n in singles if not get_technique(n).expensive]
    expensive = [n for n in singles if get_technique(n).expensive]
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        total = 0
        task = progress.add_task("screening", total=total)

        def screen_all(names: list[str], phase: str) -> None:
            nonlocal total
            total += len(names)
            progress.update(task, total=total)
            todo = [n for n in names if n not in screened]
            progress.advance(task, len(names) - len(todo))
            for i in range(0, len(todo), _SCREEN_CHUNK):
                chunk = todo[i : i + _SCREEN_CHUNK]
                screen_chunk(chunk, progress, task, phase)
                progress.advance(task, len(chunk))

        def passing(names: list[str]) -> list[str]:
            return [n for n in names if screened.get(n, {}).get("status") == "within budget"]

        def grow(singles_ok: list[str]) -> None:
            frontier = [Plan((n,)) for n in singles_ok]
            for _length in range(2, config.max_steps + 1):
                plans, ruled_out = extend_plans(frontier, singles_ok + modifiers, config.objective)
                for name, why in ruled_out.items():
                    screened.setdefault(name, {"name": name, "status": f"not tried: {why}", "error": None,
                                               "skipped": True})
                # most promising first: the product of the steps' screened speed-ups
                plans = sorted(plans, key=lambda p: -_estimate(p, screened, config.objective))
                plans = plans[: config.max_plans_per_length]
                screen_all([p.name for p in plans], "composing")
                # only plans faster than the plan they extend grow further: a step that buys nothing
                # in screening will not earn its keep in the final run either
                frontier = [p for p in plans if screened[p.name].get("status") == "within budget"
                            and (objective_score(screened[p.name], config.objective) or 0)
                            > (objective_score(screened.get(Plan(p.steps[:-1]).name, {}), config.objective) or 0)]
                if not frontier:
                    break

        # Cheap techniques and their compositions first; techniques that train (distillation,
        # fine-tuning) only afterwards, while time remains, then compositions with them too.
        screen_all(cheap, "screening")
        grow(passing(cheap))
        if expensive:
            screen_all(expensive, "screening (training)")
            grow(passing(cheap + expensive))
        save_state()

    # fit the final run into what is left: fewer rounds first (never under two), then fewer
    # finalists (never under one, with its ablation), never more than asked
    n_finalists = config.finalists
    names = final_names(n_finalists)
    repeats = config.repeats
    while repeats > 2 and final_cost(names, repeats) > time_left():
        repeats -= 1
    while n_finalists > 1 and final_cost(names, repeats) > time_left():
        n_finalists -= 1
        names = final_names(n_finalists)
    console.print(f"screened {len(screened)} candidates; final on held-out data ({repeats} rounds): "
                  f"{', '.join(names) or 'baseline only'}")
    with console.status("final side-by-side measurement on held-out data") as status:
        final = bench(
            wl, names, batch_size=batch_size, repeats=repeats, limit=config.eval_limit,
            max_quality_drop=config.max_quality_drop, min_quality=config.min_quality, baseline_model=model,
            prebuilt=built, keep_built=True,
            objective=config.objective, progress=lambda m: status.update(f"final: {m}"),
        )
    best, ablation = choose_plan(final, config.objective, config.min_gain)
    floors = f", {floors_text(config.min_quality)}" if config.min_quality else ""
    if best.name != final.baseline:
        message = (f"best plan {best.name}: {best.speedup:.2f}× the baseline ({config.objective}), "
                   f"{wl.primary_metric} drop {best.quality_drop:.4g} ≤ {config.max_quality_drop:g}{floors}")
    else:
        message = (f"no plan beat the baseline by {config.min_gain:g}× and its own noise within a "
                   f"{wl.primary_metric} drop of {config.max_quality_drop:g}{floors} on held-out data; "
                   "returning the baseline")
    result = OptimizeResult(best.name, message, final, list(screened.values()), out_dir, ablation)
    chosen = final.built.get(best.name) if best.name != final.baseline else Built(model, wl.default_settings(batch_size))
    _write_outputs(result, config, wl, chosen)
    result.elapsed_s = time.monotonic() - started
    save_state()
    return result


def _write_outputs(result: OptimizeResult, config: OptimizeConfig, wl: Workload, chosen: Built | None) -> None:
    out = result.out_dir
    plan = Plan.parse(result.best)
    payload = result.results.to_dict()
    payload["search"] = {"config": config.to_dict(), "best": result.best, "message": result.message,
                         "ablation": result.ablation, "candidates": result.search}
    write_text_atomic(out / "results.json", json.dumps(payload, indent=2, default=str))
    plan_doc = {"schema": "accelkit.plan/1", "workload": config.workload, "plan": plan.to_dict(),
                "objective": config.objective, "max_quality_drop": config.max_quality_drop,
                "min_quality": config.min_quality, "batch_size": result.results.settings.get("batch_size"), "message": result.message}
    write_text_atomic(out / "plan.json", json.dumps(plan_doc, indent=2))
    if chosen is None:  # pragma: no cover - bench keeps every variant it measured
        raise ConfigError(f"the chosen plan {result.best!r} was not kept by the final run")
    _save_model(chosen, result.best, wl, out / "model")
    from accelkit.optimize.report import write_optimize_report

    write_optimize_report([result], out / "report.html")


def _save_model(chosen: Built, name: str, workload: Workload, path: Path) -> None:
    """Save the model the final run measured (never built a third time): ``accelkit.load(path)``."""
    import warnings

    from accelkit.runtimes import ShipError
    from accelkit.saving import save

    try:
        save(chosen, path, plan=None if name == BASELINE else name, workload=workload, overwrite=True)
    except ShipError as exc:  # measured and reported all the same; only its saved form is refused
        warnings.warn(f"the chosen plan {name} is not saved to {path}: {exc}", stacklevel=2)
