"""What a search remembers: its clock against the time budget, every screened candidate with
bench's verdict (``candidates.json``, so a resumed run redoes none), and each technique's last
build time on this machine."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from accelkit.errors import ConfigError
from accelkit.optimize.config import OptimizeConfig
from accelkit.optimize.objective import objective_score
from accelkit.optimize.plans import Plan
from accelkit.report.results import write_text_atomic
from accelkit.techniques.registry import BASELINE, get_technique
from accelkit.verdict import Verdict
from accelkit.workloads import cache_dir

__all__ = ["BuildTimes", "Clock", "SearchState"]

# A technique never built on this machine: assume a training run (expensive) or a quick build.
_UNKNOWN_BUILD_S = {True: 600.0, False: 20.0}


class Clock:
    """The run's share of the time budget: what earlier runs of the same search spent is gone."""

    def __init__(self, budget_s: float, spent_before: float) -> None:
        self.started = time.monotonic()
        self.spent_before = spent_before
        self.deadline = self.started + max(0.0, budget_s - spent_before)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def spent_total(self) -> float:
        return self.spent_before + self.elapsed()


class SearchState:
    """Screened candidates by name: bench's record of each (with its ``verdict``) and the
    ``status`` the candidate table shows; skipped and ruled-out ones carry only a status."""

    def __init__(self, path: Path, config: OptimizeConfig) -> None:
        self.path, self.config = path, config
        # how many calibration items screening asks for, kept so a resumed search screens on the same data
        self.records, self.spent_before, self.screen_items = _load(path, config)

    def save(self, clock: Clock) -> None:
        payload = {"key": self.config.search_key(), "screened": list(self.records.values()),
                   "spent_s": round(clock.spent_total(), 1), "screen_items": self.screen_items}
        write_text_atomic(self.path, json.dumps(payload, indent=1, default=str))

    def __contains__(self, name: str) -> bool:
        return name in self.records

    def get(self, name: str) -> dict[str, Any]:
        return self.records.get(name) or {}

    def record(self, rec: dict[str, Any], verdict: Verdict) -> None:
        self.records[rec["name"]] = {**rec, "verdict": verdict.to_dict(), "status": verdict.status}

    def note(self, name: str, status: str, *, replace: bool = True) -> None:
        """A candidate not measured: skipped for time, left out, or ruled out by the descriptors."""
        if replace or name not in self.records:
            self.records[name] = {"name": name, "status": status, "error": None, "skipped": True}

    def passes(self, name: str) -> bool:
        """Measured and within budget, by bench's verdict."""
        verdict = self.get(name).get("verdict")
        return isinstance(verdict, dict) and verdict.get("within_budget") is True

    def passing(self) -> list[dict[str, Any]]:
        """Records within budget, best for the objective first."""
        ok = [r for name, r in self.records.items() if self.passes(name)]
        return sorted(ok, key=lambda r: objective_score(r, self.config.objective) or 0, reverse=True)

    def best_so_far(self) -> str:
        ok = self.passing()
        return ok[0]["name"] if ok else BASELINE

    def score(self, name: str) -> float:
        return objective_score(self.get(name), self.config.objective) or 0

    def baseline_pass_ms(self) -> float | None:
        """One screening pass of the baseline (None before any screening)."""
        return next((r.get("baseline_pass_ms") for r in self.records.values() if r.get("baseline_pass_ms")), None)


def _load(path: Path, config: OptimizeConfig) -> tuple[dict[str, dict], float, int | None]:
    """Screened candidates, the seconds earlier runs spent and the screening item count, when the
    search key matches."""
    if not path.is_file():
        return {}, 0.0, None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not a readable search state ({exc}); delete it to start over") from exc
    if not isinstance(state, dict) or not isinstance(state.get("screened", []), list):
        raise ConfigError(f"{path} is not a search state written by accelkit optimize; delete it to start over")
    if state.get("key") != config.search_key():
        return {}, 0.0, None  # a different search: start over rather than mix results
    recs = [r for r in state.get("screened", []) if isinstance(r, dict) and isinstance(r.get("name"), str)]
    spent = state.get("spent_s", 0.0)
    items = state.get("screen_items")
    items = items if isinstance(items, int) and not isinstance(items, bool) and items > 0 else None
    return {r["name"]: r for r in recs}, float(spent) if isinstance(spent, (int, float)) else 0.0, items


class BuildTimes:
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
        total = 0.0
        for s in Plan.parse(name).steps:
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
