import json
import re

import pytest

from accelkit.errors import SchemaError
from accelkit.report.html import pareto_front, render_html
from accelkit.report.results import SCHEMA, Results, VariantResult, load_results


def _results():
    v = lambda name, lat, q, err=None: VariantResult(  # noqa: E731
        name, speedup=1.0, throughput=1.0, latency_ms={"p50": lat, "p95": lat}, quality={"accuracy": q}, error=err
    )
    return Results("digits", "infer", "baseline",
                   [v("baseline", 10, 0.99), v("fast", 5, 0.985), v("worse", 6, 0.98), v("broken", 1, 0.0, "boom")],
                   primary_metric="accuracy")


def test_pareto_front_drops_dominated_points():
    pts = [("baseline", 10, 0.99), ("fast", 5, 0.985), ("worse", 6, 0.98)]
    assert pareto_front(pts) == {"baseline", "fast"}
    # for a lower-is-better metric the front flips
    assert pareto_front([("a", 1, 2.0), ("b", 2, 1.0), ("c", 3, 3.0)], higher_is_better=False) == {"a", "b"}


def test_html_is_self_contained_and_lists_every_variant():
    page = render_html(_results())
    assert "<svg" in page
    for name in ("baseline", "fast", "worse", "broken", "boom"):
        assert name in page
    # opens offline: nothing is fetched from anywhere
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page)


def test_wrong_schema_is_rejected(tmp_path):
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"schema": "other/9", "variants": []}))
    with pytest.raises(SchemaError, match=SCHEMA):
        load_results(p)
    p.write_text("not json")
    with pytest.raises(SchemaError, match="not JSON"):
        load_results(p)
    with pytest.raises(SchemaError, match="does not exist"):
        load_results(tmp_path / "missing.json")


def test_failure_description_is_one_short_line():
    from accelkit.report.results import describe_error

    exc = RuntimeError("export failed at op X\n" + "graph line\n" * 500)
    assert describe_error(exc) == "RuntimeError: export failed at op X"
    assert len(describe_error(ValueError("x" * 1000))) <= 300


def test_a_variant_with_a_tradeoff_curve_gets_its_own_plot():
    res = _results()
    curve = [{"layers_saved": s, "quality": q} for s, q in ((0.0, 1.0), (0.25, 0.985), (0.5, 0.95))]
    res.variants[1].details = {"tradeoff_curve": curve}
    page = render_html(res)
    assert page.count("<svg") == 2 and "fast trade-off" in page and "layers saved (calibration data)" in page
    # early exit's curve carries compute saved too: that is the axis it is plotted on
    res.variants[1].details = {"tradeoff_curve": [{**p, "compute_saved": p["layers_saved"] / 2} for p in curve]}
    assert "compute saved (calibration data)" in render_html(res)


EVIL = "<img src=x onerror=alert(1)>"


def _hostile_results():
    """Every field a results file carries, each holding markup (numbers too, as strings)."""
    good = VariantResult("baseline", speedup=1.0, throughput=100.0, latency_ms={"p50": 10.0, "p95": 11.0},
                         quality={"accuracy": 0.99}, quality_drop=0.0, meets_budget=True)
    bad = VariantResult(
        EVIL, speedup=EVIL, throughput=EVIL, throughput_unit=EVIL, latency_ms={"p50": EVIL, "p95": EVIL},
        peak_memory_mb=EVIL, size_mb=EVIL, flops_per_item=EVIL, roofline_fraction=EVIL,
        quality={EVIL: EVIL, "accuracy": EVIL}, quality_drop=EVIL, meets_budget=EVIL,
        details={EVIL: EVIL, "tradeoff_curve": [{"layers_saved": EVIL, "quality": EVIL}] * 3},
    )
    failed = VariantResult("x", error=EVIL, details={"why": EVIL})
    return Results(
        EVIL, EVIL, EVIL, [good, bad, failed], primary_metric=EVIL, max_quality_drop=EVIL,
        settings={"batch_size": EVIL, "items": EVIL, "repeats": EVIL},
        machine={"cpu": {"model": EVIL, "logical_cores": EVIL, "isa": [EVIL]},
                 "cuda": {"devices": [{"name": EVIL}]}, "versions": {"torch": EVIL}},
        roofline={"fp32_gflops": EVIL, "bf16_gflops": EVIL, "int8_gops": EVIL},
    )


def test_every_value_from_a_results_file_is_escaped():
    from accelkit.report.html import Summary

    res = _hostile_results()
    page = render_html(res, title=EVIL, summaries=[Summary(chosen=EVIL, message=EVIL, model_path=EVIL)])
    assert EVIL not in page and "<img" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page  # shown, as text
    # and with the primary metric a real one, the card and plot paths see the hostile values too
    res.primary_metric = "accuracy"
    page = render_html(res, summaries=[Summary(chosen="baseline", message=EVIL, model_path=EVIL)])
    assert EVIL not in page and "<img" not in page


def test_optimize_report_escapes_the_search_block(tmp_path):
    from types import SimpleNamespace

    from accelkit.optimize.report import write_optimize_report

    res = _hostile_results()
    res.variants[0].name = res.baseline
    search = [{"name": EVIL, "speedup": EVIL, "quality": {EVIL: EVIL}, "quality_drop": EVIL, "build_s": EVIL,
               "status": EVIL}, "not a record"]
    run = SimpleNamespace(best=res.baseline, message=EVIL, results=res, search=search, out_dir=tmp_path)
    page = write_optimize_report([run], tmp_path / "report.html").read_text()
    assert EVIL not in page and "<img" not in page


def test_report_leads_with_the_summary_card():
    from accelkit.report.html import Summary

    res = _results()
    page = render_html(res, summaries=[Summary(chosen="fast", message="best plan fast", model_path="out/m")])
    card = page.index('class="card"')
    assert card < page.index("<svg") < page.index("<details")  # card, plot, then the collapsed tables
    assert "chosen plan" in page and "fast" in page[card:card + 2000]
    assert 'accelkit.load("out/m")' in page
    # without a search, the card shows the fastest variant within budget (the failed one is not it)
    page = render_html(res)
    assert "fastest variant" in page and "broken" not in page[page.index('class="card"'):page.index("<svg")]


def test_plot_uses_human_units_and_log_scale_for_a_wide_spread():
    res = _results()
    res.variants[0].latency_ms = {"p50": 1180.0, "p95": 1200.0}
    page = render_html(res)
    assert "log scale" in page and "e+0" not in page
    assert ">1 s<" in page or ">2 s<" in page or ">500 ms<" in page
    res.variants[0].latency_ms = {"p50": 10.0, "p95": 11.0}
    assert "log scale" not in render_html(res)


def test_plot_points_are_numbered_with_a_legend_and_do_not_overlap():
    from accelkit.report.html import _place_labels

    res = _results()
    page = render_html(res)
    assert 'class="legend"' in page and ">fast</span></td>" in page
    spots = _place_labels([(100.0, 100.0), (101.0, 100.5), (100.5, 99.0)])
    for i, a in enumerate(spots):
        for b in spots[i + 1:]:
            assert (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2 >= 18 ** 2


def test_report_command_reads_the_search_block_of_an_optimize_run(tmp_path, capsys):
    from accelkit.cli import main

    res = _results()
    doc = res.to_dict()
    doc["search"] = {"best": "fast", "message": "best plan fast: 2.00×",
                     "candidates": [{"name": "fast", "speedup": 2.0, "status": "within budget"}]}
    (tmp_path / "results.json").write_text(json.dumps(doc))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "plan.json").write_text("{}")
    try:
        main(["report", str(tmp_path / "results.json"), "-o", str(tmp_path / "r.html"), "--format", "markdown"])
    except SystemExit as exc:
        assert exc.code == 0
    page = (tmp_path / "r.html").read_text()
    assert "chosen plan" in page and "best plan fast" in page and "Search: 1 candidates screened" in page
    assert f'accelkit.load("{tmp_path / "model"}")' in page
    assert "| fast |" in capsys.readouterr().out
