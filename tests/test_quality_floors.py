import pytest

from accelkit.bench import bench
from accelkit.errors import ConfigError
from accelkit.quality_floors import (
    check_floor_metrics,
    floors_missed,
    floors_text,
    parse_quality_floors,
)
from accelkit.report.results import Results


def test_floors_parse_from_the_command_line_and_bad_ones_are_config_errors():
    assert parse_quality_floors(["cosine_min=0.97", " top10_agreement = 0.9"]) == {
        "cosine_min": 0.97, "top10_agreement": 0.9}
    assert parse_quality_floors([]) is None and parse_quality_floors(None) is None
    for bad in ("cosine_min", "=0.97", "cosine_min=", "cosine_min=high", "cosine_min=nan", "cosine_min=inf"):
        with pytest.raises(ConfigError, match="METRIC=NUMBER"):
            parse_quality_floors([bad])


def test_a_floor_names_each_metric_below_it_and_an_unknown_metric_is_refused():
    floors = {"cosine_min": 0.97, "cosine_mean": 0.99}
    assert floors_missed({"cosine_min": 0.963, "cosine_mean": 0.997}, floors) == ["cosine_min 0.963 < 0.97"]
    assert floors_missed({"cosine_min": 0.97, "cosine_mean": 0.99}, floors) == []  # a floor is inclusive
    assert floors_missed({"cosine_mean": 1.0}, floors) == ["cosine_min not measured"]
    assert floors_missed({"cosine_min": 0.5}, None) == []
    assert floors_text(floors) == "cosine_min ≥ 0.97, cosine_mean ≥ 0.99"
    with pytest.raises(ConfigError, match="choose from accuracy, agreement"):
        check_floor_metrics({"cosine_min": 0.97}, {"accuracy": 0.9, "agreement": 1.0}, "digits")


def test_bench_marks_a_variant_below_a_floor_out_of_budget_and_says_which(digits_workload, digits_model, tmp_path):
    from tests.optimize.test_optimize import _Noisy

    from accelkit.techniques.registry import register_technique, unregister_technique

    @register_technique("int8-test-noisy", group="precision", description="adds noise")
    def _noisy(model, ctx):
        return _Noisy(model, 50.0), ctx.settings

    try:
        # the drop budget alone admits anything (1.0): only the floor can refuse the noisy variant
        res = bench(digits_workload, ["int8-test-noisy", "bf16"], limit=64, repeats=1, warmup=0, roofline=False,
                    memory=False, flops=False, baseline_model=digits_model, max_quality_drop=1.0,
                    min_quality={"agreement": 0.9})
    finally:
        unregister_technique("int8-test-noisy")
    noisy, bf16 = res.variant("int8-test-noisy"), res.variant("bf16")
    assert noisy.meets_budget is False and noisy.details["floors_missed"][0].startswith("agreement ")
    assert bf16.meets_budget is True and "floors_missed" not in bf16.details
    assert res.variant("default").meets_budget is True
    # the floors travel with the results file and show in the table's title
    from accelkit.report.results import load_results, save_results

    save_results(res, tmp_path / "r.json")
    assert load_results(tmp_path / "r.json").min_quality == {"agreement": 0.9}
    from rich.console import Console

    from accelkit.report.table import print_table

    console = Console(record=True, width=80)
    print_table(res, console)
    assert "budget: accuracy drop ≤ 1, agreement ≥ 0.9" in console.export_text()


def test_a_results_file_with_a_floor_that_is_not_a_number_is_a_schema_error(tmp_path):
    from accelkit.errors import SchemaError

    base = Results(workload="digits", task="infer", baseline="default", variants=[]).to_dict()
    base["min_quality"] = {"cosine_min": "high"}
    with pytest.raises(SchemaError, match="min_quality"):
        Results.from_dict(base)
