"""Output paths: an unwritable --out is refused before the run; results are written before printing."""

from __future__ import annotations

import json

import pytest

import accelkit.bench
import accelkit.report.table
from accelkit.cli import main
from accelkit.report.results import Results, VariantResult


def _code(args):
    try:
        main(args)
    except SystemExit as exc:
        return exc.code or 0
    return 0


def test_bench_out_in_proc_is_refused_before_running(monkeypatch, capsys):
    def never(*a, **k):
        raise AssertionError("the benchmark ran although --out cannot be written")

    monkeypatch.setattr(accelkit.bench, "bench", never)
    assert _code(["bench", "--workload", "digits", "--variants", "baseline", "--out", "/proc/x.json"]) == 2
    assert "not writable" in capsys.readouterr().err


def test_bench_writes_results_before_printing_the_table(tmp_path, monkeypatch):
    res = Results("digits", "infer", "baseline", [VariantResult("baseline", speedup=1.0)])
    monkeypatch.setattr(accelkit.bench, "bench", lambda *a, **k: res)

    def broken_table(*a, **k):
        raise RuntimeError("table crashed")

    monkeypatch.setattr(accelkit.report.table, "print_table", broken_table)
    out = tmp_path / "r.json"
    with pytest.raises(RuntimeError, match="table crashed"):
        main(["bench", "--workload", "digits", "--variants", "baseline", "--out", str(out)])
    assert json.loads(out.read_text())["variants"][0]["name"] == "baseline"
