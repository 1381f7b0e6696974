"""The final side-by-side run on held-out data: which plans it measures (finalists and every plan
one step shorter, for the ablation), what it will cost, and how it is fitted into the time left."""

from __future__ import annotations

from accelkit.errors import UnknownVariantError
from accelkit.optimize.config import OptimizeConfig
from accelkit.optimize.plans import Plan, drop_one_step
from accelkit.optimize.state import BuildTimes, SearchState
from accelkit.techniques.registry import composition_error, get_technique

__all__ = ["FinalRun", "MIN_RESERVE_S"]

# What one final-measurement round is assumed to cost before any screening has timed a pass.
MIN_RESERVE_S = 60.0


class FinalRun:
    """Plans and cost of the final run. ``prebuilt`` names the plans kept from screening (no
    build to pay for); ``n_screen``/``n_eval`` scale screening passes to the held-out data."""

    def __init__(self, config: OptimizeConfig, state: SearchState, build_times: BuildTimes, prebuilt: dict,
                 n_screen: int, n_eval: int) -> None:
        self.config, self.state, self.build_times, self.prebuilt = config, state, build_times, prebuilt
        self.n_screen, self.n_eval = n_screen, n_eval

    def names(self, n_finalists: int | None = None) -> list[str]:
        passing = [r["name"] for r in self.state.passing()]
        finalists = passing[: n_finalists or self.config.finalists]
        if finalists and not any(_saveable(f) for f in finalists):
            # optimize ships the best plan that saves: without one in the final run, the folder
            # would get the baseline however well a saveable plan screened
            finalists += [n for n in passing if _saveable(n)][:1]
        names = list(finalists)
        for f in finalists:  # every plan one step shorter, measured in the same run for the ablation
            for sub in drop_one_step(Plan.parse(f)):
                if sub.steps and sub.name not in names and composition_error(sub.steps) is None:
                    names.append(sub.name)
        return names

    def cost(self, names: list[str], repeats: int) -> float:
        """Seconds the final run will take: per variant a quality, memory and FLOP pass plus the
        timing rounds, scaled from the screening passes to the held-out item count."""
        base_ms = self.state.baseline_pass_ms()
        if base_ms is None:
            return MIN_RESERVE_S
        scale = self.n_eval / max(self.n_screen, 1) / 1e3
        per_pass = [base_ms * scale] + [(self.state.get(n).get("pass_ms") or {}).get("p50", base_ms) * scale
                                        for n in names]
        builds = sum(0.0 if n in self.prebuilt else self.build_times.expected(n) for n in names)
        # per variant: a quality pass (FLOPs counted in it), a memory pass, a warm-up and the rounds,
        # and one pass of margin: a pass on held-out data is not exactly the scaled screening one
        # + the two roofline measurements (a growing GEMM per kernel, ~8 s) and the reference passes
        return builds + (repeats + 4) * sum(per_pass) + 20.0

    def reserve(self) -> float:
        # the smallest final run: the best plan so far and its ablation, two rounds; the final run
        # takes more finalists and rounds when screening leaves the time
        return max(MIN_RESERVE_S, self.cost(self.names(1), min(self.config.repeats, 2)))

    def fit(self, time_left: float) -> tuple[list[str], int]:
        """(plans, rounds) for the time left: fewer rounds first (never under two), then fewer
        finalists (never under one, with its ablation), never more than asked."""
        n_finalists = self.config.finalists
        names = self.names(n_finalists)
        repeats = self.config.repeats
        while repeats > 2 and self.cost(names, repeats) > time_left:
            repeats -= 1
        while n_finalists > 1 and self.cost(names, repeats) > time_left:
            n_finalists -= 1
            names = self.names(n_finalists)
        return names, repeats


def _saveable(name: str) -> bool:
    """Whether every step of the plan ``name`` says it round-trips through accelkit.save/load."""
    try:
        return all(get_technique(step).saveable for step in Plan.parse(name).steps)
    except UnknownVariantError:  # not a registered plan: nothing to say about it
        return True
