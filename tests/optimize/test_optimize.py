import json
import sys
import textwrap

import pytest
import torch

from accelkit.commands.optimize import parse_duration
from accelkit.errors import ConfigError
from accelkit.optimize import (
    OptimizeConfig,
    Plan,
    choose_plan,
    drop_one_step,
    extend_plans,
    optimize,
    technique_group,
)
from accelkit.report.results import Results, VariantResult
from accelkit.techniques.registry import composition_error, register_technique, unregister_technique

CALLS: dict[str, int] = {}


class _Noisy(torch.nn.Module):
    def __init__(self, model, scale):
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, x):
        out = self.model(x)
        return out + self.scale * torch.randn_like(out) * out.std()


@pytest.fixture()
def test_variants():
    @register_technique("int8-test-lossy", group="precision", description="adds noise")
    def _lossy(model, ctx):
        CALLS["lossy"] = CALLS.get("lossy", 0) + 1
        return _Noisy(model, 50.0), ctx.settings

    @register_technique("int8-test-crash", group="precision", description="fails to build")
    def _crash(model, ctx):
        raise RuntimeError("unsupported op")

    @register_technique("prune-test-exact", group="structure", description="changes nothing")
    def _exact(model, ctx):
        CALLS["exact"] = CALLS.get("exact", 0) + 1
        return model, ctx.settings

    yield
    for name in ("int8-test-lossy", "int8-test-crash", "prune-test-exact"):
        unregister_technique(name)


def test_groups_come_from_the_descriptors_not_the_names():
    assert technique_group("prune-structured-50") == "structure"
    assert technique_group("mobilenet-v2") == "structure"  # once guessed "precision" from its name
    assert technique_group("routed-depth") == "structure"
    assert technique_group("dynamic-padding") == "input"
    assert technique_group("onnx-int8-static") == "runtime"
    assert Plan.parse("distill-3layer+bf16").steps == ("distill-3layer", "bf16")


def test_descriptors_rule_out_compositions_that_cannot_work_or_do_nothing():
    # autocast has no effect on an ONNX Runtime session
    assert "voids the autocast" in composition_error(["bf16", "onnx-int8-dynamic"])
    # a torch-quantized or bf16-cast model is not what ONNX Runtime's quantizers take
    assert "after int4-weight-only the model is quantized" in composition_error(["int4-weight-only", "onnx-int8-static"])
    assert "after bf16-cast the model is eager-lowp" in composition_error(["bf16-cast", "onnx"])
    # nothing runs on after an ONNX Runtime session but settings changes
    assert composition_error(["int8-aware", "compile"]) is not None
    assert composition_error(["int8-aware", "dynamic-padding"]) is None
    assert composition_error(["distill-3layer", "bf16", "dynamic-padding"]) is None
    # zeroed weights speed nothing up: unstructured pruning is a size technique only
    assert "does not help throughput" in composition_error(["prune-unstructured-50", "onnx"], objective="throughput",
                                                           search=True)
    # the search takes one technique per group, in group order; a user's own name need not
    assert "one of each group" in composition_error(["bf16", "int8-dynamic"], search=True)
    assert composition_error(["dynamic-padding", "bf16"]) is None


def test_only_passing_plans_are_extended_with_allowed_steps():
    passing = ["distill-3layer", "bf16", "dynamic-padding", "onnx"]
    two, ruled_out = extend_plans([Plan((n,)) for n in passing], passing)
    names = {p.name for p in two}
    assert {"distill-3layer+bf16", "distill-3layer+dynamic-padding", "bf16+dynamic-padding", "dynamic-padding+onnx",
            "distill-3layer+onnx"} <= names
    assert "bf16+onnx" not in names and "voids the autocast" in ruled_out["bf16+onnx"]
    three, _ = extend_plans([Plan(("distill-3layer", "dynamic-padding")), Plan(("distill-3layer", "bf16"))], passing)
    assert {p.name for p in three} == {"distill-3layer+bf16+dynamic-padding", "distill-3layer+dynamic-padding+onnx"}
    assert [p.name for p in drop_one_step(Plan(("a", "b", "c")))] == ["b+c", "a+c", "a+b"]


def _final(rows: dict[str, list[float]], drops: dict[str, float] | None = None) -> Results:
    variants = [VariantResult("baseline", speedup=1.0, pair_ratios=[1.0] * 5, quality_drop=0.0, meets_budget=True)]
    for name, ratios in rows.items():
        drop = (drops or {}).get(name, 0.0)
        variants.append(VariantResult(name, speedup=sorted(ratios)[len(ratios) // 2], pair_ratios=ratios,
                                      quality_drop=drop, meets_budget=drop <= 0.01))
    return Results(workload="w", task="infer", baseline="baseline", variants=variants)


def test_a_step_stays_only_when_it_beats_the_spread_of_the_pair_ratios():
    # a+b is 2% faster than a by its median, but the round-by-round ratio swings by ±4%: noise
    final = _final({"a": [5.0, 5.2, 4.8, 5.1, 4.9], "b": [1.5] * 5,
                    "a+b": [5.3, 5.0, 4.9, 5.4, 4.7]})
    best, ablation = choose_plan(final, "throughput", 1.02)
    assert best.name == "a"
    # now b makes every round 20% faster: it earns its keep, and the ablation shows both drops
    final = _final({"a": [5.0, 5.2, 4.8, 5.1, 4.9], "b": [1.5] * 5, "a+b": [6.0, 6.24, 5.76, 6.12, 5.88]})
    best, ablation = choose_plan(final, "throughput", 1.02)
    assert best.name == "a+b"
    assert {r["dropped"]: r["name"] for r in ablation} == {"a": "b", "b": "a"}
    assert all(r["earns_its_keep"] and r["chosen_over_this"] > 1 + r["spread"] for r in ablation)
    # a faster plan over budget is never chosen
    final = _final({"a": [5.0] * 5, "a+b": [9.0] * 5}, drops={"a+b": 0.05})
    assert choose_plan(final, "throughput", 1.02)[0].name == "a"


def test_durations_parse_and_bad_ones_are_config_errors():
    assert parse_duration("10m") == 600
    assert parse_duration("1h30m") == 5400
    assert parse_duration("45") == 45
    with pytest.raises(ConfigError, match="10m"):
        parse_duration("ten minutes")
    with pytest.raises(ConfigError, match="objective"):
        OptimizeConfig(objective="speed")


# a budget well above what the tiny candidates take: on a slow or busy machine a candidate
# skipped for time would fail these checks (a larger budget does not make the search longer)
def _config(**kw):
    base = dict(workload="digits", max_quality_drop=0.005, batch_size=64, time_budget_s=600, screen_limit=128,
                eval_limit=128, repeats=1, candidates=["int8-test-lossy", "int8-test-crash", "prune-test-exact"])
    return OptimizeConfig(**{**base, **kw})


def test_search_rejects_lossy_and_crashing_candidates_and_writes_outputs(test_variants, tmp_path, digits_model):
    res = optimize(_config(), tmp_path)
    by_name = {r["name"]: r for r in res.search}
    assert by_name["int8-test-lossy"]["status"].startswith("quality drop")
    assert "unsupported op" in by_name["int8-test-crash"]["status"]
    assert by_name["prune-test-exact"]["status"] == "within budget"
    # a plan that extends a failed prefix is never tried
    assert not any("int8-test-lossy+" in n or "+int8-test-lossy" in n for n in by_name)
    # the exact plan cannot beat the baseline by 2%, or the noise won: either way the winner is within budget
    assert res.best in ("default", "prune-test-exact")
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["schema"] == "accelkit.plan/1" and Plan.parse(plan["plan"]["name"]).name == res.best
    # the plan as applied: each step with the config it ran with
    assert [s["technique"] for s in plan["plan"]["applied"]] == list(Plan.parse(res.best).steps)
    assert all(s["config"] == {} for s in plan["plan"]["applied"])
    # the chosen plan saves: the model folder holds it, and the message has no line about shipping
    assert res.shipped.name == res.best and plan["shipped"]["name"] == res.best and "saved" not in res.message
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["schema"] == "accelkit.results/1" and results["search"]["best"] == res.best
    # where the time went, phase by phase: an overrun can be traced to screening or the final run
    timing = results["search"]["timing_s"]
    assert set(timing) == {"budget_s", "before_final_s", "final_estimate_s", "final_s", "total_s"}
    assert 0 < timing["before_final_s"] <= timing["total_s"] and 0 < timing["final_s"] <= timing["total_s"]
    # every measured candidate's status is bench's verdict, judged once
    measured = [r for r in results["search"]["candidates"] if not r.get("skipped")]
    assert measured and all(r["status"] == (r["verdict"]["reason"] or "within budget") for r in measured)
    assert by_name["int8-test-lossy"]["verdict"]["rejection"] == "quality-drop"
    page = (tmp_path / "report.html").read_text()
    assert "unsupported op" in page and "int8-test-lossy" in page
    # the chosen model is saved and loads back with the baseline's outputs (both candidates are exact)
    import accelkit
    from accelkit.workloads import RunSettings, get_workload

    loaded = accelkit.load(tmp_path / "model")
    wl = get_workload("digits")
    data = wl.eval_data(64)
    ref = wl.predict(digits_model, data, RunSettings(batch_size=64))
    torch.testing.assert_close(wl.predict(loaded.model, data, loaded.settings), ref)


def test_budget_no_plan_meets_returns_the_baseline(test_variants, tmp_path, digits_model):
    res = optimize(_config(candidates=["int8-test-lossy"]), tmp_path)
    assert res.best == "default"
    assert "returning the baseline" in res.message


def test_interrupted_search_resumes_without_redoing_candidates(test_variants, tmp_path, digits_model):
    CALLS.clear()
    optimize(_config(candidates=["int8-test-lossy"], finalists=1), tmp_path)
    first = CALLS["lossy"]
    optimize(_config(candidates=["int8-test-lossy"], finalists=1), tmp_path)
    assert CALLS["lossy"] == first  # screened once; not redone on the second run


def test_users_own_workload_runs_through_the_cli(tmp_path, monkeypatch, capsys):
    (tmp_path / "wl_user_opt.py").write_text(textwrap.dedent("""
        import torch
        def make():
            torch.manual_seed(0)
            model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
            return {"model": model, "inputs": torch.randn(64, 16), "labels": torch.randint(0, 4, (64,))}
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    from accelkit.cli import main

    try:
        main(["optimize", "--workload", "wl_user_opt:make", "--max-quality-drop", "0.05", "--time-budget", "60s",
              "--candidates", "bf16", "--out", str(tmp_path / "o")])
    except SystemExit as exc:
        assert exc.code == 0
    assert (tmp_path / "o" / "report.html").exists()
    assert "report" in capsys.readouterr().out
    sys.modules.pop("wl_user_opt", None)


def test_a_resumed_run_spends_only_what_the_earlier_runs_left(test_variants, tmp_path, digits_model):
    cfg = _config(candidates=["prune-test-exact"], time_budget_s=120)
    state = {"key": cfg.search_key(), "screened": [], "spent_s": 120.0}
    (tmp_path / "candidates.json").write_text(json.dumps(state))
    CALLS.clear()
    res = optimize(cfg, tmp_path)
    by_name = {r["name"]: r for r in res.search}
    assert by_name["prune-test-exact"]["status"] == "skipped: time budget spent"
    assert "exact" not in CALLS  # never built: the budget was spent by the earlier run
    assert json.loads((tmp_path / "candidates.json").read_text())["spent_s"] > 120


def test_bad_budgets_are_config_errors():
    for bad in (float("nan"), float("inf"), -0.1):
        with pytest.raises(ConfigError, match="max_quality_drop"):
            OptimizeConfig(max_quality_drop=bad)


def test_a_search_state_that_is_not_one_is_one_clear_error(test_variants, tmp_path, digits_model):
    for junk in ("[]", "{not json", '{"key": 1, "screened": 5}'):
        (tmp_path / "candidates.json").write_text(junk)
        with pytest.raises(ConfigError, match="candidates.json"):
            optimize(_config(candidates=["prune-test-exact"]), tmp_path)


def test_a_quality_floor_refuses_a_plan_the_drop_budget_admits(test_variants, tmp_path, digits_model):
    # a drop budget of 1.0 admits the noisy candidate; its agreement floor does not
    res = optimize(_config(max_quality_drop=1.0, min_quality={"agreement": 0.9},
                           candidates=["int8-test-lossy", "prune-test-exact"], finalists=2), tmp_path)
    by_name = {r["name"]: r for r in res.search}
    assert by_name["int8-test-lossy"]["status"].startswith("below the quality floor: agreement ")
    assert by_name["prune-test-exact"]["status"] == "within budget"
    assert res.best != "int8-test-lossy" and "agreement ≥ 0.9" in res.message
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["min_quality"] == {"agreement": 0.9}


def test_bad_floors_are_config_errors():
    for bad in ({"cosine_min": float("nan")}, {"": 0.9}, {"agreement": "high"}, [0.97]):
        with pytest.raises(ConfigError, match="min_quality"):
            OptimizeConfig(min_quality=bad)


def test_a_search_whose_models_cannot_be_saved_says_so_and_leaves_no_model(test_variants, tmp_path, monkeypatch,
                                                                         digits_model):
    import accelkit.saving
    from accelkit.runtimes import ShipError

    def refuse(built, path, **kw):
        raise ShipError("a wrapper the saved format does not record")

    monkeypatch.setattr(accelkit.saving, "save", refuse)
    res = optimize(_config(candidates=["prune-test-exact"]), tmp_path)
    assert res.shipped.name is None and res.best in res.shipped.refused
    assert res.message.splitlines()[-1].startswith(f"no model saved to {tmp_path / 'model'}: ")
    assert "a wrapper the saved format does not record" in res.message
    assert not (tmp_path / "model").exists()
    plan = json.loads((tmp_path / "plan.json").read_text())
    results = json.loads((tmp_path / "results.json").read_text())
    assert plan["shipped"]["name"] is None and results["search"]["shipped"] == plan["shipped"]
    assert "no model saved" in (tmp_path / "report.html").read_text()
