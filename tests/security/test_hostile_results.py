"""Results files are user input: a wrong type is refused on read with the field's name."""

from __future__ import annotations

import json

import pytest

from accelkit.cli import main
from accelkit.errors import SchemaError
from accelkit.report.results import SCHEMA, Results


def _doc(**variant) -> dict:
    base = {"name": "baseline", "speedup": 1.0, "quality": {"accuracy": 0.9}, "latency_ms": {"p50": 1.0, "p95": 2.0}}
    return {"schema": SCHEMA, "workload": "digits", "task": "infer", "baseline": "baseline",
            "primary_metric": "accuracy", "variants": [base, {**base, **variant}]}


@pytest.mark.parametrize("doc, field", [
    (_doc(name="v", speedup="fast"), "'speedup'"),
    (_doc(name="v", quality={"accuracy": "<b>high</b>"}), "'quality'"),
    (_doc(name="v", latency_ms={"p50": "1", "p95": 2.0}), "'latency_ms'"),
    (_doc(name="v", meets_budget="yes"), "'meets_budget'"),
    (_doc(name=["v"]), "'name'"),
    ({**_doc(), "variants": ["x"]}, "'variants'"),
    ({**_doc(), "variants": {"a": 1}}, "'variants'"),
    ({**_doc(), "settings": ["batch"]}, "'settings'"),
    ({**_doc(), "higher_is_better": "no"}, "'higher_is_better'"),
])
def test_from_dict_rejects_a_wrong_type_naming_the_field(doc, field):
    with pytest.raises(SchemaError, match=field):
        Results.from_dict(doc)


def test_report_on_a_mistyped_results_file_exits_2_with_one_line(tmp_path, capsys):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_doc(name="v", speedup="fast")))
    with pytest.raises(SystemExit) as exc:
        main(["report", str(path), "-o", str(tmp_path / "r.html")])
    assert exc.value.code == 2
    assert "'speedup'" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()
