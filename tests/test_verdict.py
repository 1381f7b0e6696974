"""The verdict on one candidate: judged in order (failure, drop, floors), round-tripped through results.json."""

from __future__ import annotations

import pytest

from accelkit.errors import SchemaError
from accelkit.report.results import Results, VariantResult
from accelkit.verdict import WITHIN_BUDGET, Verdict, judge


def test_judge_reports_the_first_rule_broken():
    failed = judge(quality={}, quality_drop=None, max_quality_drop=0.01, min_quality=None, error="boom")
    assert failed == Verdict(False, (), "failed: boom", "failed")
    over = judge(quality={"accuracy": 0.5}, quality_drop=0.2, max_quality_drop=0.01,
                 min_quality={"accuracy": 0.9})
    assert over.rejection == "quality-drop" and over.status == "quality drop 0.2 > budget 0.01"
    assert over.floors_missed and not over.within_budget
    floor = judge(quality={"accuracy": 0.5}, quality_drop=0.0, max_quality_drop=0.01, min_quality={"accuracy": 0.9})
    assert floor.rejection == "floor" and floor.status.startswith("below the quality floor: accuracy ")
    ok = judge(quality={"accuracy": 0.95}, quality_drop=0.005, max_quality_drop=0.01, min_quality={"accuracy": 0.9})
    assert ok.within_budget and ok.status == WITHIN_BUDGET and ok.reason is None
    assert judge(quality={}, quality_drop=0.5, max_quality_drop=None, min_quality=None).within_budget


def test_the_verdict_round_trips_through_results_and_decides_within_budget():
    verdict = Verdict(False, ("accuracy 0.5 < 0.9",), "below the quality floor: accuracy 0.5 < 0.9", "floor")
    rec = VariantResult("x", quality_drop=0.0, meets_budget=False, verdict=verdict)
    res = Results("digits", "infer", "default", [VariantResult("default"), rec])
    back = Results.from_dict(res.to_dict())
    assert back.variant("x").verdict == verdict and not back.variant("x").within_budget
    # a record without a verdict (an earlier accelkit's file) counts unless failed or marked over
    assert back.variant("default").verdict is None and back.variant("default").within_budget
    assert not VariantResult("y", error="E").within_budget


def test_a_verdict_that_is_not_one_is_a_schema_error():
    doc = Results("digits", "infer", "default", [VariantResult("default")]).to_dict()
    doc["variants"][0]["verdict"] = {"within_budget": "yes"}
    with pytest.raises(SchemaError, match="verdict"):
        Results.from_dict(doc)
    doc["variants"][0]["verdict"] = "ok"
    with pytest.raises(SchemaError, match="'verdict'"):
        Results.from_dict(doc)
