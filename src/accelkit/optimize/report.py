"""The optimize report: the summary card and Pareto plot of the final side-by-side measurement,
plus every screened candidate with the reason it was kept or rejected (collapsed)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from accelkit.report.html import Summary, render_html
from accelkit.report.results import write_text_atomic
from accelkit.verdict import WITHIN_BUDGET

__all__ = ["search_summary", "write_optimize_report"]


def _num(v: object, fmt: str) -> str:
    # candidates.json may be hand-edited: only real numbers are formatted
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return "–" if v is None else html.escape(str(v))
    return format(v, fmt)


def _quality(q: object) -> str:
    if not isinstance(q, dict):
        return "–"
    return ", ".join(f"{k}={_num(v, '.4g')}" for k, v in q.items()) or "–"


def _passed(rec: dict) -> bool:
    """Within budget by bench's verdict (a results.json from before verdicts: by its status)."""
    verdict = rec.get("verdict")
    if isinstance(verdict, dict):
        return verdict.get("within_budget") is True
    return rec.get("status") == WITHIN_BUDGET


def _search_table(search: Sequence[dict], best: str | None) -> str:
    rows = []
    recs = [r for r in search if isinstance(r, dict)]

    def order(r: dict) -> tuple:
        sp = r.get("speedup")
        return not _passed(r), -(sp if isinstance(sp, (int, float)) else 0)

    for rec in sorted(recs, key=order):
        name = str(rec.get("name", "?"))
        star = " ★" if name == best else ""
        speed = rec.get("speedup")
        cells = [
            html.escape(name) + star,
            _num(speed, ".3g") + ("×" if isinstance(speed, (int, float)) and speed else ""),
            html.escape(_quality(rec.get("quality"))),
            _num(rec.get("quality_drop"), ".4g"),
            _num(rec.get("build_s"), ".1f"),
            html.escape(str(rec.get("status", ""))),
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (
        "<table><thead><tr><th>candidate (screening, calibration split)</th><th>speed-up</th><th>quality</th>"
        "<th>drop</th><th>build s</th><th>verdict</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def search_summary(best: str | None, message: str, out_dir: str | Path | None) -> Summary:
    """The card's facts for one search: its choice, its verdict, and the saved model if present."""
    model = Path(out_dir) / "model" if out_dir is not None else None
    has_model = model is not None and (model / "plan.json").is_file()
    return Summary(chosen=best, message=message, model_path=str(model) if has_model else None)


def search_details(search: Sequence[dict], best: str | None, n_screened: int | None = None) -> str:
    """The collapsed list of screened candidates with their verdicts (trusted HTML)."""
    n = len(search) if n_screened is None else n_screened
    return (
        f"<details><summary>Search: {n} candidates screened, with the reason each was kept or rejected</summary>"
        "<p class='note'>Candidates were screened on the calibration split (two interleaved rounds each against "
        "the baseline); plans extending a technique that failed the budget were not tried; the finalists were "
        "measured on held-out data (the plot and tables above).</p>"
        + _search_table(search, best) + "</details>"
    )


def write_optimize_report(results: Sequence, path: str | Path) -> Path:
    """One page for one or more optimize runs (the demo writes minilm and digits together)."""
    summaries, extras = [], []
    for r in results:
        summaries.append(search_summary(r.best, r.message, r.out_dir))
        roof = r.results.variant(r.best).roofline_fraction if r.best else None
        roof_txt = (f"<p class='note'>{html.escape(r.best)} reaches {roof * 100:.1f}% of this machine's measured "
                    "GEMM peak.</p>" if isinstance(roof, float) else "")
        extras.append(roof_txt + search_details(r.search, r.best))
    page = render_html([r.results for r in results], title="accelkit optimize", summaries=summaries, extras=extras)
    return write_text_atomic(path, page)
