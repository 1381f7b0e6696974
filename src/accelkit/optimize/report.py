"""The optimize report: the final side-by-side table and Pareto plot, plus every screened
candidate with the reason it was kept or rejected."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from accelkit.report.html import render_html
from accelkit.report.results import write_text_atomic

__all__ = ["write_optimize_report"]


def _num(v: float | None, fmt: str) -> str:
    return "–" if v is None else format(v, fmt)


def _search_table(result) -> str:
    rows = []
    for rec in sorted(result.search, key=lambda r: (r.get("status") != "within budget", -(r.get("speedup") or 0))):
        quality = ", ".join(f"{k}={v:.4g}" for k, v in (rec.get("quality") or {}).items()) or "–"
        star = " ★" if rec["name"] == result.best else ""
        cells = [
            html.escape(rec["name"]) + star,
            _num(rec.get("speedup"), ".3g") + ("×" if rec.get("speedup") else ""),
            html.escape(quality),
            _num(rec.get("quality_drop"), ".4g"),
            _num(rec.get("build_s"), ".1f"),
            html.escape(str(rec.get("status", ""))),
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (
        "<table><thead><tr><th>candidate (screening, calibration split)</th><th>speed-up</th><th>quality</th>"
        "<th>drop</th><th>build s</th><th>verdict</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def write_optimize_report(results: Sequence, path: str | Path) -> Path:
    """One page for one or more optimize runs (the demo writes minilm and digits together)."""
    extra = []
    for r in results:
        roof = r.results.variant(r.best).roofline_fraction if r.best else None
        roof_txt = f" It reaches {roof * 100:.1f}% of this machine's measured GEMM peak." if roof else ""
        extra.append(
            f"<h2>{html.escape(r.results.workload)}: search</h2>"
            f"<p><b>{html.escape(r.message)}</b>.{roof_txt} Candidates were screened on the calibration split "
            "(two interleaved rounds each against the baseline); plans extending a technique that failed the "
            "budget were not tried; the finalists above were measured on held-out data.</p>"
            + _search_table(r)
        )
    page = render_html([r.results for r in results], title="accelkit optimize", extra_html="".join(extra))
    return write_text_atomic(path, page)
