"""The search's pieces on their own: the state decides on bench's verdict, the kept models stay
bounded, the clock counts earlier runs, the final run fits the time left, and screening runs on
fewer items when a baseline pass over all of them would not fit the budget (kept for a resume)."""

from __future__ import annotations

import json

from accelkit.optimize.config import OptimizeConfig
from accelkit.optimize.final import MIN_RESERVE_S, FinalRun
from accelkit.optimize.screening import KeptModels, fit_screen_data
from accelkit.optimize.state import Clock, SearchState
from accelkit.verdict import Verdict


class _NoBuilds:
    def expected(self, name: str) -> float:
        return 0.0


def _state(tmp_path, **kw) -> SearchState:
    return SearchState(tmp_path / "candidates.json", OptimizeConfig("digits", **kw))


def test_the_state_passes_on_the_verdict_and_keeps_the_users_status(tmp_path):
    state = _state(tmp_path)
    state.record({"name": "a", "speedup": 1.5}, Verdict(True))
    state.record({"name": "b", "speedup": 3.0}, Verdict(False, (), "quality drop 0.2 > budget 0.01", "quality-drop"))
    state.note("c", "within budget")  # a status alone (hand-edited, skipped) never passes
    assert [state.passes(n) for n in "abc"] == [True, False, False]
    assert state.get("b")["status"] == "quality drop 0.2 > budget 0.01" and state.get("a")["status"] == "within budget"
    assert state.best_so_far() == "a"
    state.save(Clock(600, 0))
    again = _state(tmp_path)
    assert again.passes("a") and not again.passes("b")


def test_a_note_does_not_replace_a_measurement_unless_told(tmp_path):
    state = _state(tmp_path)
    state.record({"name": "a"}, Verdict(True))
    state.note("a", "not tried: x", replace=False)
    assert state.passes("a")
    state.note("a", "skipped: time budget spent")
    assert not state.passes("a") and state.get("a")["skipped"]


def test_kept_models_drop_the_worst_beyond_their_bound():
    kept = KeptModels()
    for i in range(14):
        kept.keep(f"p{i}", object(), float(i))
    assert len(kept) == 12 and "p0" not in kept and "p1" not in kept and "p13" in kept


def test_the_clock_counts_what_earlier_runs_spent():
    clock = Clock(100, 40)
    assert 59 < clock.left() <= 60 and clock.spent_total() >= 40
    assert Clock(100, 150).left() <= 0


def test_the_final_run_gives_up_rounds_then_finalists_to_fit(tmp_path):
    state = _state(tmp_path, repeats=5, finalists=3)
    for name, speed in (("a", 3.0), ("b", 2.0), ("c", 1.5)):
        state.record({"name": name, "speedup": speed, "baseline_pass_ms": 1000.0, "pass_ms": {"p50": 1000.0}},
                     Verdict(True))
    final = FinalRun(state.config, state, _NoBuilds(), {}, n_screen=100, n_eval=100)
    assert final.fit(10_000) == (["a", "b", "c"], 5)
    # a 1 s pass: (rounds + 4) passes of the baseline and each plan, plus 20 s
    assert final.cost(["a"], 2) == 6 * 2 + 20
    names, repeats = final.fit(40)  # two rounds of three plans cost 44 s, of two 38 s
    assert repeats == 2 and names == ["a", "b"]
    assert final.fit(0) == (["a"], 2)  # never under one finalist nor two rounds
    assert _state(tmp_path / "new").records == {} and FinalRun(
        state.config, _state(tmp_path / "new"), _NoBuilds(), {}, 1, 1).reserve() == MIN_RESERVE_S


def test_a_final_run_cut_to_plans_that_cannot_be_saved_keeps_the_best_that_can(tmp_path):
    # the folder optimize writes holds the best saveable plan of the final run: one must be in it
    state = _state(tmp_path, repeats=5, finalists=2)
    for name, speed in (("static-cache-compile", 4.0), ("speculative", 3.5), ("openvino-generate", 3.0),
                        ("bf16-cast", 1.5)):
        state.record({"name": name, "speedup": speed, "baseline_pass_ms": 1000.0, "pass_ms": {"p50": 1000.0}},
                     Verdict(True))
    final = FinalRun(state.config, state, _NoBuilds(), {}, n_screen=100, n_eval=100)
    assert final.fit(0) == (["static-cache-compile", "openvino-generate"], 2)
    assert final.fit(10_000)[0] == ["static-cache-compile", "speculative", "openvino-generate"]
    state.record({"name": "int8-dynamic", "speedup": 5.0, "baseline_pass_ms": 1000.0, "pass_ms": {"p50": 1000.0}},
                 Verdict(True))
    assert final.fit(0)[0] == ["int8-dynamic"]  # the best saves: nothing added


def test_a_state_file_of_another_search_starts_over(tmp_path):
    (tmp_path / "candidates.json").write_text(json.dumps({"key": {"other": 1}, "screened": [{"name": "a"}],
                                                          "spent_s": 99}))
    state = _state(tmp_path)
    assert state.records == {} and state.spent_before == 0.0


def _final_run(digits_model):
    """A final run where a+b beats a by 20% every round (so it is chosen), a beats the baseline;
    a+b's model is held by a technique's wrapper, which the saved format does not record."""
    import copy

    from accelkit.report.results import Results, VariantResult
    from accelkit.techniques.compile import WarmedModule
    from accelkit.techniques.registry import Built
    from accelkit.workloads import RunSettings

    rows = {"a": [5.0] * 5, "a+b": [6.0] * 5}
    variants = [VariantResult("baseline", speedup=1.0, pair_ratios=[1.0] * 5, quality_drop=0.0, meets_budget=True)]
    variants += [VariantResult(n, speedup=r[0], pair_ratios=r, quality_drop=0.0, meets_budget=True)
                 for n, r in rows.items()]
    final = Results(workload="digits", task="infer", baseline="baseline", variants=variants)
    final.built = {n: Built(digits_model, RunSettings(batch_size=8), steps=tuple(n.split("+")),
                            configs=tuple({"k": i} for i, _ in enumerate(n.split("+")))) for n in rows}
    final.built["a+b"].model = WarmedModule(copy.deepcopy(digits_model))
    return final, Built(digits_model, RunSettings(batch_size=8))


def _refusing(monkeypatch, names):
    """accelkit.saving.save raising ShipError for the plans in ``names``, saving the others."""
    import accelkit.saving
    from accelkit.runtimes import ShipError

    real = accelkit.saving.save

    def save(built, path, **kw):
        if built.name in names:
            raise ShipError(f"{built.name} wraps its layers")
        return real(built, path, **kw)

    monkeypatch.setattr(accelkit.saving, "save", save)


def test_an_unsaveable_chosen_plan_ships_the_next_best_and_says_why(tmp_path, monkeypatch, digits_model,
                                                                   digits_workload):
    import accelkit
    from accelkit.optimize.search import Shipped, _shipped_line, choose_plan, ship_model

    final, baseline = _final_run(digits_model)
    config = OptimizeConfig("digits")
    assert choose_plan(final, "throughput", config.min_gain)[0].name == "a+b"
    shipped = ship_model(final, config, digits_workload, baseline, tmp_path / "model")
    assert shipped.name == "a" and shipped.plan == [{"technique": "a", "config": {"k": 0}}]
    assert list(shipped.refused) == ["a+b"] and "technique's own save function" in shipped.refused["a+b"]
    assert accelkit.load(tmp_path / "model").plan == shipped.plan
    line = _shipped_line("a+b", shipped, tmp_path / "model")
    assert line.startswith("saved a to ") and "a+b cannot be saved (the model (WarmedModule)" in line
    assert _shipped_line("a", Shipped("a"), tmp_path / "model") is None
    # refused by a save that raises (a structural change shows only then): the next one is shipped all the same
    final.built["a+b"].model = digits_model
    _refusing(monkeypatch, {"a+b"})
    shipped = ship_model(final, config, digits_workload, baseline, tmp_path / "model")
    assert shipped == Shipped("a", [{"technique": "a", "config": {"k": 0}}], {"a+b": "a+b wraps its layers"})


def test_when_nothing_can_be_saved_no_model_folder_is_left(tmp_path, monkeypatch, digits_model, digits_workload):
    from accelkit.optimize.search import _shipped_line, ship_model

    final, baseline = _final_run(digits_model)
    config = OptimizeConfig("digits")
    ship_model(final, config, digits_workload, baseline, tmp_path / "model")  # an earlier run's model
    assert (tmp_path / "model" / "plan.json").is_file()
    _refusing(monkeypatch, {"a", "default"})
    shipped = ship_model(final, config, digits_workload, baseline, tmp_path / "model")
    assert shipped.name is None and list(shipped.refused) == ["a+b", "a", "baseline"]
    assert not (tmp_path / "model").exists()
    assert _shipped_line("a+b", shipped, tmp_path / "model").startswith("no model saved to ")


class _SlowWorkload:
    """Items are ints, each counted as ``units`` (tokens written, say); predict advances a fake
    clock by ``per_unit`` seconds a unit; the calibration set holds ``calib`` items."""

    def __init__(self, per_unit: float, clock: list[float], units: int = 1, calib: int = 1000) -> None:
        self.per_unit, self.clock, self.units, self.calib, self.calls = per_unit, clock, units, calib, 0

    def n_items(self, data):
        return len(data) * self.units

    def screen_data(self, limit):
        return list(range(min(limit, self.calib)))

    def default_settings(self, batch_size=None):
        return batch_size

    def predict(self, model, data, settings):
        self.calls += 1
        self.clock[0] += self.per_unit * self.n_items(data) * (10 if self.calls == 1 else 1)  # a slow first call


def test_screening_runs_on_fewer_items_when_the_baseline_is_too_slow_for_the_budget(monkeypatch):
    import time

    clock = [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    # 0.25 s an item and 300 s left: a pass may take 300/40 = 7.5 s, so 30 items of 128
    wl = _SlowWorkload(0.25, clock)
    data, limit = fit_screen_data(wl, None, 128, 1, 300.0)
    assert (data, limit) == (list(range(30)), 30)
    assert wl.calls == 2  # the untimed first call (10x slower here) did not count
    # the item count in another unit (32 tokens an item) and fewer calibration items than asked
    data, limit = fit_screen_data(_SlowWorkload(0.25 / 32, clock, units=32, calib=64), None, 128, 1, 300.0)
    assert len(data) <= 30 and per_pass(data, 0.25) <= 7.5 and limit == len(data)
    # never under 4 batches, and a fast baseline keeps every item
    assert fit_screen_data(_SlowWorkload(10.0, clock), None, 128, 8, 300.0)[1] == 32
    assert fit_screen_data(_SlowWorkload(0.001, clock), None, 128, 8, 300.0)[1] == 128


def per_pass(data, seconds_an_item):
    return len(data) * seconds_an_item


def test_a_resumed_search_keeps_its_screening_item_count(tmp_path):
    state = _state(tmp_path)
    assert state.screen_items is None
    state.screen_items = 30
    state.save(Clock(600, 0))
    assert _state(tmp_path).screen_items == 30


def test_an_overrun_says_which_phase_took_the_time():
    from accelkit.optimize.search import overrun_line

    line = overrun_line({"budget_s": 300, "before_final_s": 170.4, "final_s": 190.2, "final_estimate_s": 120.0,
                         "total_s": 361.0})
    assert line == ("took 361s of the 300s budget: screening 170s, the final run 190s (expected 120s); "
                    "--eval-limit shortens the final run")
