"""Screening: candidates measured a few at a time on calibration items shaped like the held-out
data, and plans grown one step at a time from the candidates within budget.

Each screening run interleaves up to three candidates with the baseline; a candidate whose
expected build would overrun the time left (after the final run's reserve) is skipped.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from accelkit.bench import SearchOptions, bench
from accelkit.optimize.config import OptimizeConfig
from accelkit.optimize.final import FinalRun
from accelkit.optimize.objective import objective_score
from accelkit.optimize.plans import Plan, extend_plans
from accelkit.optimize.state import BuildTimes, Clock, SearchState
from accelkit.report.results import VariantResult, describe_error
from accelkit.techniques.registry import Built
from accelkit.verdict import judge
from accelkit.workloads import Workload

__all__ = ["KeptModels", "Screening", "fit_screen_data"]

_KEEP_BUILT = 12  # screened models kept in memory for the final run, best first
_SCREEN_CHUNK = 3  # candidates screened side by side in one run, sharing the baseline's passes
# interleaved timing rounds per screening run; no warm-up round: each candidate's quality pass,
# just before the rounds, already warmed it (and the baseline's reference pass warmed the baseline)
_SCREEN_ROUNDS = 3
# the most of the budget left one baseline pass over the screening data may take: screening runs
# it some ten times (rounds, quality, first-token and reference passes), the final run as often
_SCREEN_PASS_SHARE = 1 / 40


def fit_screen_data(wl: Workload, model: Any, limit: int, batch_size: int, seconds_left: float,
                    console: Console | None = None) -> tuple[Any, int]:
    """``wl.screen_data(limit)`` and ``limit``, or fewer calibration items when a baseline pass over
    them would take more than ``_SCREEN_PASS_SHARE`` of ``seconds_left`` (the baseline timed on one
    batch after an untimed one); never fewer than 4 batches. On a 2-core Zen 4, ``generate`` at
    batch 1 over 128 prompts took 31 s a pass, and a 5-minute search ran 10 minutes."""
    floor = 4 * batch_size
    data = wl.screen_data(limit)
    if limit <= floor:
        return data, limit
    probe, settings = wl.screen_data(batch_size), wl.default_settings(batch_size)
    wl.predict(model, probe, settings)  # the first call pays for lazy set-up
    start = time.perf_counter()
    wl.predict(model, probe, settings)
    # per unit of the workload's item count (a token written, for text generation)
    per_unit = (time.perf_counter() - start) / max(wl.n_items(probe), 1)
    allowed, asked = seconds_left * _SCREEN_PASS_SHARE, limit
    while limit > floor and per_unit * wl.n_items(data) > allowed:
        limit = max(floor, min(limit // 2, int(limit * allowed / (per_unit * wl.n_items(data)))))
        data = wl.screen_data(limit)
    if limit < asked and console is not None:
        console.print(f"screening on {limit} calibration items, not {asked}: a baseline pass over them "
                      f"takes about {per_unit * wl.n_items(data):.0f}s, and more would not fit the "
                      f"{seconds_left:.0f}s left (--time-budget)")
    return data, limit


class KeptModels(dict[str, Built]):
    """Screened models within budget, reused by the final run: the best ``_KEEP_BUILT`` by score."""

    def __init__(self) -> None:
        super().__init__()
        self.scores: dict[str, float] = {}

    def keep(self, name: str, built: Built, score: float) -> None:
        self[name], self.scores[name] = built, score
        if len(self) > _KEEP_BUILT:
            worst = min(self, key=self.scores.__getitem__)
            self.pop(worst)
            self.scores.pop(worst)


class Screening:
    """Screens candidates into ``state`` within ``clock``'s time, keeping their models in ``kept``."""

    def __init__(self, config: OptimizeConfig, wl: Workload, model: Any, batch_size: int, data: Any,
                 state: SearchState, kept: KeptModels, build_times: BuildTimes, clock: Clock,
                 final: FinalRun) -> None:
        self.config, self.wl, self.model, self.batch_size, self.data = config, wl, model, batch_size, data
        self.state, self.kept, self.build_times, self.clock, self.final = state, kept, build_times, clock, final
        self._progress: Progress | None = None
        self._task: Any = None
        self._total = 0

    def run(self, cheap: list[str], expensive: list[str], modifiers: list[str], console: Console) -> None:
        """Cheap techniques and their compositions first; techniques that train (distillation,
        fine-tuning) only afterwards, while time remains, then compositions with them too.

        ``modifiers`` only apply to what another step built (parallel streams on an ORT session):
        never screened alone, tried as the last step of compositions whose model they accept."""
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), console=console, transient=True) as progress:
            self._progress, self._task = progress, progress.add_task("screening", total=0)
            self.screen(cheap, "screening")
            self.grow(self.passing(cheap), modifiers)
            if expensive:
                self.screen(expensive, "screening (training)")
                self.grow(self.passing(cheap + expensive), modifiers)
            self.state.save(self.clock)

    def passing(self, names: list[str]) -> list[str]:
        return [n for n in names if self.state.passes(n)]

    def screen(self, names: list[str], phase: str) -> None:
        """Screen ``names`` (those not screened before) a chunk at a time."""
        assert self._progress is not None
        self._total += len(names)
        self._progress.update(self._task, total=self._total)
        todo = [n for n in names if n not in self.state]
        self._progress.advance(self._task, len(names) - len(todo))
        for i in range(0, len(todo), _SCREEN_CHUNK):
            chunk = todo[i : i + _SCREEN_CHUNK]
            self._chunk(chunk, phase)
            self._progress.advance(self._task, len(chunk))

    def grow(self, singles_ok: list[str], modifiers: list[str]) -> None:
        """Plans one step longer at a time, from the plans that passed and beat their prefix."""
        frontier = [Plan((n,)) for n in singles_ok]
        objective = self.config.objective
        for _length in range(2, self.config.max_steps + 1):
            plans, ruled_out = extend_plans(frontier, singles_ok + modifiers, objective)
            for name, why in ruled_out.items():
                self.state.note(name, f"not tried: {why}", replace=False)
            # most promising first: the product of the steps' screened speed-ups
            plans = sorted(plans, key=lambda p: -self._estimate(p))[: self.config.max_plans_per_length]
            self.screen([p.name for p in plans], "composing")
            # only plans faster than the plan they extend grow further: a step that buys nothing
            # in screening will not earn its keep in the final run either
            frontier = [p for p in plans if self.state.passes(p.name)
                        and self.state.score(p.name) > self.state.score(Plan(p.steps[:-1]).name)]
            if not frontier:
                break

    def _estimate(self, plan: Plan) -> float:
        score = 1.0
        for step in plan.steps:
            score *= objective_score(self.state.get(step), self.config.objective) or 1.0
        return score

    def _affordable(self, names: list[str]) -> list[str]:
        """The names whose builds fit the time left after the final run's reserve; the others skipped."""
        chosen: list[str] = []
        pass_s = (self.state.baseline_pass_ms() or 0.0) / 1e3
        for name in names:
            left = self.clock.left() - self.final.reserve() - pass_s * _SCREEN_ROUNDS * (2 + len(chosen))
            expected = self.build_times.expected(name) + sum(self.build_times.expected(n) for n in chosen)
            if left <= 0:
                self.state.note(name, "skipped: time budget spent")
            elif expected > left:
                known = self.build_times.known(name)
                self.state.note(name, f"skipped: {'its last build here took' if known else 'never built here: assumed'}"
                                      f" {self.build_times.expected(name):.0f}s, {max(left, 0):.0f}s left")
            else:
                chosen.append(name)
        return chosen

    def _chunk(self, names: list[str], phase: str) -> None:
        """Screen up to _SCREEN_CHUNK candidates in one interleaved run: they share the baseline's
        passes, which dominate screening when the baseline is the slow one."""
        chosen = self._affordable(names)
        if not chosen:
            return
        assert self._progress is not None
        self._progress.update(self._task, description=f"{phase}: [bold]{escape(', '.join(chosen))}[/bold] · best "
                                                      f"so far {escape(self.state.best_so_far())} · "
                                                      f"{max(self.clock.left(), 0):.0f}s left")
        config, failure = self.config, None
        try:
            res = bench(
                self.wl, chosen, batch_size=self.batch_size, repeats=_SCREEN_ROUNDS, warmup=0,
                max_quality_drop=config.max_quality_drop, min_quality=config.min_quality, roofline=False,
                baseline_model=self.model, memory=config.objective == "memory", flops=False, keep_built=True,
                search=SearchOptions(objective=config.objective, split="calib", data=self.data),
            )
        except Exception as exc:  # a crashing metric is a result for every candidate of the run
            from accelkit.quiet import log_exception

            log_exception(exc, f"candidates {chosen}")
            res, failure = None, describe_error(exc)
        for name in chosen:
            if res is None:
                rec = VariantResult(name, error=failure)
                rec.verdict = judge(quality=None, quality_drop=None, error=failure,
                                    max_quality_drop=config.max_quality_drop, min_quality=config.min_quality)
                self.state.record(rec.to_dict(), rec.verdict)
                continue
            rec = res.variant(name)
            assert rec.verdict is not None  # bench judges every candidate it measures
            self.state.record({**rec.to_dict(), "baseline_pass_ms": (res.variant(res.baseline).pass_ms or {})
                               .get("p50")}, rec.verdict)
            self.build_times.record(name, rec.build_s)
            if rec.verdict.within_budget and name in res.built:
                self.kept.keep(name, res.built[name], objective_score(rec, config.objective) or 0)
        self.state.save(self.clock)
