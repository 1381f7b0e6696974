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
