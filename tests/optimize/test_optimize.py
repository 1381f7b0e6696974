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
    compose_plans,
    extend_plans,
    optimize,
    technique_group,
)
from accelkit.variants import VARIANTS, register_variant

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
    @register_variant("int8-test-lossy")
    def _lossy(model, settings, workload):
        CALLS["lossy"] = CALLS.get("lossy", 0) + 1
        return _Noisy(model, 50.0), settings

    @register_variant("int8-test-crash")
    def _crash(model, settings, workload):
        raise RuntimeError("unsupported op")

    @register_variant("prune-test-exact")
    def _exact(model, settings, workload):
        CALLS["exact"] = CALLS.get("exact", 0) + 1
        return model, settings

    yield
    for name in ("int8-test-lossy", "int8-test-crash", "prune-test-exact"):
        VARIANTS.pop(name)


def test_compose_plans_takes_one_technique_per_group_in_order():
    plans = {p.name for p in compose_plans(["bf16", "int8-static", "dynamic-padding", "distill-3layer", "onnx"])}
    assert "distill-3layer+int8-static+dynamic-padding+onnx" in plans
    assert "distill-3layer+bf16" in plans
    assert not any("bf16" in p and "int8" in p for p in plans)  # one precision at a time
    assert all(p.count("+") >= 1 for p in plans)
    assert technique_group("prune-structured-50") == "structure"
    assert Plan.parse("distill-3layer+bf16").steps == ("distill-3layer", "bf16")


def test_only_passing_plans_are_extended_and_groups_keep_their_order():
    passing = ["distill-3layer", "bf16", "dynamic-padding"]
    two = extend_plans([Plan((n,)) for n in passing], passing)
    assert {p.name for p in two} == {"distill-3layer+bf16", "distill-3layer+dynamic-padding", "bf16+dynamic-padding"}
    # only the plans that passed grow: here 'distill-3layer+bf16' failed the budget
    three = extend_plans([Plan(("bf16", "dynamic-padding"))], passing)
    assert three == []
    three = extend_plans([Plan(("distill-3layer", "dynamic-padding")), Plan(("distill-3layer", "bf16"))], passing)
    assert [p.name for p in three] == ["distill-3layer+bf16+dynamic-padding"]


def test_durations_parse_and_bad_ones_are_config_errors():
    assert parse_duration("10m") == 600
    assert parse_duration("1h30m") == 5400
    assert parse_duration("45") == 45
    with pytest.raises(ConfigError, match="10m"):
        parse_duration("ten minutes")
    with pytest.raises(ConfigError, match="objective"):
        OptimizeConfig(objective="speed")


def _config(**kw):
    base = dict(workload="digits", max_quality_drop=0.005, batch_size=64, time_budget_s=120, screen_limit=128,
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
    assert res.best in ("baseline", "prune-test-exact")
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["schema"] == "accelkit.plan/1" and Plan.parse(plan["plan"]["name"]).name == res.best
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["schema"] == "accelkit.results/1" and results["search"]["best"] == res.best
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
    assert res.best == "baseline"
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
