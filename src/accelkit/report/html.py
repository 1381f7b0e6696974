"""A self-contained HTML report: what the user came for first, then the evidence.

Each workload's section leads with a summary card (the chosen plan, or the fastest variant
within the quality budget; its speed-up against the baseline measured in the same run; its
quality against the budget; where the saved model is and the three lines that load it), then
the quality-vs-latency plot (numbered points with a legend beside it, log scale when the
latencies span more than 10×), then the full tables, collapsed.

No scripts, fonts or images from the network: the plot is inline SVG, so the page opens
offline and can be mailed as one file. A results file is data from anywhere: every value that
reaches the page goes through ``html.escape``, and a number that arrives as a string is shown
as text, never computed with.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from accelkit.quality_floors import floors_text
from accelkit.report.results import Results, VariantResult, result_notes, write_text_atomic

__all__ = ["Summary", "chosen_variant", "pareto_front", "render_html", "write_html_report"]


@dataclass
class Summary:
    """What the card at the top of a section says beyond the measurements.

    ``chosen``: the plan a search picked (else the fastest variant within budget is shown);
    ``message``: the search's one-line verdict; ``model_path``: where the chosen model was saved.
    """

    chosen: str | None = None
    message: str = ""
    model_path: str | None = None


def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def _n(x: object) -> float | None:
    """``x`` as a finite float when it is a real number; strings and bools are not numbers here."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def _d(x: object) -> dict:
    return x if isinstance(x, dict) else {}


def _fmt(v: object, digits: int = 3, suffix: str = "") -> str:
    """A number for a table cell (escaped); anything else is shown as escaped text."""
    if v is None:
        return "–"
    x = _n(v)
    if x is None:
        return _e(v)
    # never 1.18e+03: from 100 up, whole numbers with thousands separators
    text = f"{x:,.0f}" if abs(x) >= 100 else f"{x:.{digits}g}"
    return _e(text + suffix)


def _ms(x: float) -> str:
    """Human latency for a cell: 0.42 ms, 5.4 ms, 61.5 ms, 217 ms, 1.20 s."""
    if x >= 1000:
        return f"{x / 1000:.2f} s"
    if x >= 100:
        return f"{x:.0f} ms"
    return f"{x:.2f} ms" if x < 1 else f"{x:.1f} ms"


def _tick_ms(x: float) -> str:
    """An axis tick: round values need no decimals (20 ms, 0.5 ms, 2 s)."""
    return f"{x / 1000:g} s" if x >= 1000 else f"{x:g} ms"


def _rate(x: float) -> str:
    """Human throughput: 12,734 or 4,163 or 12.5 (never 1.18e+03)."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _wrap_points(name: str) -> str:
    """An escaped name that may break after each '+' (between techniques), never inside one."""
    return "+<wbr>".join(f"<span>{_e(part)}</span>" for part in str(name).split("+"))


def pareto_front(points: Sequence[tuple[str, float, float]], higher_is_better: bool = True) -> set[str]:
    """Names of points (name, latency, quality) that no other point beats on both axes."""
    front = set()
    for name, lat, q in points:
        dominated = False
        for other, lat2, q2 in points:
            if other == name:
                continue
            better_q = q2 >= q if higher_is_better else q2 <= q
            strictly = lat2 < lat or (q2 > q if higher_is_better else q2 < q)
            if lat2 <= lat and better_q and strictly:
                dominated = True
                break
        if not dominated:
            front.add(name)
    return front


def _points(res: Results) -> list[tuple[str, float, float]]:
    """(name, latency p50 ms, primary quality) of every measured variant with real numbers."""
    pts = []
    for v in res.variants:
        lat = _n(_d(v.latency_ms).get("p50"))
        q = _n(_d(v.quality).get(res.primary_metric))
        if v.error is None and lat is not None and lat > 0 and q is not None:
            pts.append((str(v.name), lat, q))
    return pts


def chosen_variant(res: Results, summary: Summary | None = None) -> VariantResult | None:
    """The variant the card is about: the search's choice, else the fastest within budget."""
    if summary is not None and summary.chosen:
        for v in res.variants:
            if v.name == summary.chosen:
                return v
    ok = [v for v in res.variants if v.within_budget and _n(v.speedup) is not None]
    return max(ok, key=lambda v: _n(v.speedup) or 0.0, default=None)


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values (1, 2, 5 × 10^k steps) covering [lo, hi]."""
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    return ticks


def _log_ticks(lo: float, hi: float) -> list[float]:
    ticks = []
    for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            t = m * 10**k
            if lo <= t <= hi:
                ticks.append(t)
    return ticks


def _place_labels(marks: list[tuple[float, float]], r: float = 9.0) -> list[tuple[float, float]]:
    """Where each numbered bubble goes: on its point if free, else the nearest free offset."""
    placed: list[tuple[float, float]] = []
    offsets = [(0, 0)] + [(dx * s, dy * s) for s in (1.0, 1.8, 2.6)
                          for dx, dy in ((0, -2.2), (2.2, 0), (0, 2.2), (-2.2, 0),
                                         (1.6, -1.6), (1.6, 1.6), (-1.6, 1.6), (-1.6, -1.6))]
    for x, y in marks:
        best = (x, y)
        for dx, dy in offsets:
            cx, cy = x + dx * r, y + dy * r
            if all((cx - px) ** 2 + (cy - py) ** 2 >= (2 * r + 1) ** 2 for px, py in placed):
                best = (cx, cy)
                break
        placed.append(best)
    return placed


def _svg_scatter(res: Results, front: set[str]) -> str:
    pts = _points(res)
    if not pts:
        return "<p>No measured variant to plot.</p>"
    W, H = 700, 430
    L, R, T, B = 78, 24, 20, 58
    xs, ys = [p[1] for p in pts], [p[2] for p in pts]
    log_x = max(xs) / min(xs) > 10
    if log_x:
        x0, x1 = min(xs) / 1.4, max(xs) * 1.4
        fx = math.log10
    else:
        x0, x1 = 0.0, max(xs) * 1.12
        fx = float
    y0, y1 = min(ys), max(ys)
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 0.01, y1 + 0.01
    pad = (y1 - y0) * 0.12
    y0, y1 = y0 - pad, y1 + pad

    def sx(x: float) -> float:
        return L + (fx(x) - fx(x0)) / (fx(x1) - fx(x0)) * (W - L - R)

    def sy(y: float) -> float:
        return H - B - (y - y0) / (y1 - y0) * (H - T - B)

    better = "higher" if res.higher_is_better else "lower"
    parts = [f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
             f'role="img" aria-label="{_e(res.primary_metric)} against latency">',
             f'<rect x="0" y="0" width="{W}" height="{H}" fill="#fff"/>']
    x_ticks = _log_ticks(x0, x1) if log_x else _nice_ticks(x0, x1)
    y_ticks = _nice_ticks(y0, y1)
    y_digits = max(0, -math.floor(math.log10(max(y_ticks[1] - y_ticks[0], 1e-12)))) if len(y_ticks) > 1 else 4
    for t in x_ticks:
        parts.append(f'<line x1="{sx(t):.1f}" y1="{T}" x2="{sx(t):.1f}" y2="{H - B}" stroke="#eee"/>'
                     f'<text x="{sx(t):.1f}" y="{H - B + 18}" text-anchor="middle" class="tick">{_e(_tick_ms(t))}</text>')
    for t in y_ticks:
        parts.append(f'<line x1="{L}" y1="{sy(t):.1f}" x2="{W - R}" y2="{sy(t):.1f}" stroke="#eee"/>'
                     f'<text x="{L - 8}" y="{sy(t) + 4:.1f}" text-anchor="end" class="tick">{t:.{y_digits}f}</text>')
    parts += [f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="#555"/>',
              f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="#555"/>',
              f'<text x="{(L + W - R) / 2}" y="{H - 14}" text-anchor="middle" class="axis">latency per batch, p50'
              f'{" (log scale)" if log_x else ""} — lower is better →</text>',
              f'<text x="18" y="{(T + H - B) / 2}" transform="rotate(-90 18 {(T + H - B) / 2})" text-anchor="middle" '
              f'class="axis">{_e(res.primary_metric)} — {better} is better</text>']
    on_front = sorted((p for p in pts if p[0] in front), key=lambda p: p[1])
    if len(on_front) > 1:
        path = " ".join(f"{sx(p[1]):.1f},{sy(p[2]):.1f}" for p in on_front)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#d62728" stroke-dasharray="5 4"/>')
    marks = [(sx(lat), sy(q)) for _, lat, q in pts]
    for i, ((name, lat, q), (mx, my), (lx, ly)) in enumerate(zip(pts, marks, _place_labels(marks), strict=True), 1):
        color = "#d62728" if name in front else "#1f77b4"
        tip = f"{i}. {name}: {_ms(lat)}, {res.primary_metric} {q:.4f}"
        if (lx, ly) != (mx, my):
            parts.append(f'<line x1="{mx:.1f}" y1="{my:.1f}" x2="{lx:.1f}" y2="{ly:.1f}" stroke="{color}" stroke-width="1"/>'
                         f'<circle cx="{mx:.1f}" cy="{my:.1f}" r="3" fill="{color}"/>')
        parts.append(f'<g><title>{_e(tip)}</title><circle cx="{lx:.1f}" cy="{ly:.1f}" r="9" fill="{color}"/>'
                     f'<text x="{lx:.1f}" y="{ly + 4:.1f}" text-anchor="middle" class="num">{i}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def _legend(res: Results, front: set[str], chosen: str | None) -> str:
    unit = _unit(res)
    rows = []
    for i, (name, lat, q) in enumerate(_points(res), 1):
        v = next(v for v in res.variants if v.name == name)
        cls = " ".join(c for c, on in (("front", name in front), ("chosen", name == chosen)) if on)
        thr = _n(v.throughput)
        rows.append(f'<tr class="{cls}"><td class="num">{i}</td><td class="name">{_wrap_points(name)}</td>'
                    f"<td>{_e(_ms(lat))}</td><td>{_e(_rate(thr)) if thr is not None else '–'}</td>"
                    f"<td>{q:.4f}</td></tr>")
    return ('<table class="legend"><thead><tr><th>#</th><th class="name">variant</th><th>latency</th>'
            f"<th>{_e(unit)}</th><th>{_e(res.primary_metric)}</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _unit(res: Results) -> str:
    return str(next((v.throughput_unit for v in res.variants if v.throughput_unit), "items/s"))


def _svg_tradeoff(name: str, curve: Sequence[dict[str, Any]]) -> str:
    """One variant's calibration trade-off (early exit, routed depth, layer skipping): compute or
    layers saved against quality, one point per threshold setting it considered."""
    points = [p for p in curve if isinstance(p, dict)]
    x_key = "compute_saved" if points and all("compute_saved" in p for p in points) else "layers_saved"
    pts = sorted((x, q) for x, q in ((_n(p.get(x_key)), _n(p.get("quality"))) for p in points)
                 if x is not None and q is not None)
    if len(pts) < 2:
        return ""
    W, H, M = 420, 260, 50
    y0, y1 = min(q for _, q in pts), max(q for _, q in pts)
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 0.01, y1 + 0.01
    x1 = max(max(x for x, _ in pts), 1e-9)

    def sx(x: float) -> float:
        return M + x / x1 * (W - 2 * M)

    def sy(y: float) -> float:
        return H - M - (y - y0) / (y1 - y0) * (H - 2 * M)

    line = " ".join(f"{sx(x):.1f},{sy(q):.1f}" for x, q in pts)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" role="img">',
             f'<title>{_e(name)} trade-off</title>',
             f'<line x1="{M}" y1="{H - M}" x2="{W - M}" y2="{H - M}" stroke="#333"/>',
             f'<line x1="{M}" y1="{M}" x2="{M}" y2="{H - M}" stroke="#333"/>',
             f'<text x="{W / 2}" y="{H - 12}" text-anchor="middle" font-size="11">{x_key.replace("_", " ")} '
             f'(calibration data)</text>',
             f'<text x="12" y="{H / 2}" transform="rotate(-90 12 {H / 2})" text-anchor="middle" font-size="11">quality</text>',
             f'<text x="{W / 2}" y="{M - 15}" text-anchor="middle" font-size="12">{_e(name)}</text>',
             f'<polyline points="{line}" fill="none" stroke="#1f77b4"/>']
    for i in range(3):
        yv, xv = y0 + (y1 - y0) * i / 2, x1 * i / 2
        parts.append(f'<text x="{M - 4}" y="{sy(yv) + 4:.1f}" text-anchor="end" font-size="10">{yv:.4g}</text>')
        parts.append(f'<text x="{sx(xv):.1f}" y="{H - M + 14}" text-anchor="middle" font-size="10">{xv:.0%}</text>')
    parts += [f'<circle cx="{sx(x):.1f}" cy="{sy(q):.1f}" r="2.5" fill="#1f77b4"/>' for x, q in pts]
    parts.append("</svg>")
    return "".join(parts)


def _quality_text(quality: object) -> str:
    items = []
    for k, val in _d(quality).items():
        x = _n(val)
        items.append(f"{k}={x:.4g}" if x is not None else f"{k}={val}")
    return _e(", ".join(items)) or "–"


def _row(v: VariantResult, res: Results, front: set[str]) -> str:
    budget = {True: "✔", False: "✘"}.get(v.meets_budget, "–")  # type: ignore[call-overload]
    cls = "err" if v.error else ("front" if v.name in front else "")
    lat, roof = _d(v.latency_ms), _n(v.roofline_fraction)
    cells = [
        _e(v.name) + (" ★" if v.name in front else ""),
        _fmt(v.speedup, 3, "×"),
        _fmt(v.throughput, 4),
        _fmt(lat.get("p50")),
        _fmt(lat.get("p95")),
        _fmt(v.peak_memory_mb, 4),
        _fmt(v.size_mb, 3),
        _fmt(v.flops_per_item, 3),
        _fmt(roof * 100 if roof else None, 3, "%"),
        _quality_text(v.quality),
        _fmt(v.quality_drop, 3),
        budget,
        _e(v.error or ""),
    ]
    row = f'<tr class="{cls}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
    if v.details:
        detail = _e(json.dumps(v.details, indent=1, default=str)[:20000])
        row += (f'<tr class="details"><td colspan="{len(cells)}"><details><summary>what {_e(v.name)} decided'
                f"</summary><pre>{detail}</pre></details></td></tr>")
    return row


def _load_lines(path: str) -> str:
    return (f"import accelkit\nm = accelkit.load({json.dumps(path)})\n"
            "outputs = m(**batch)  # the same inputs as the original model; m.settings holds how to run it\n"
            "# embedding models: m.encode(sentences) -> numpy array, as SentenceTransformer.encode")


def _card(res: Results, summary: Summary | None) -> str:
    """The answer first: what to use, how much faster than today, at what quality, and where it is."""
    v = chosen_variant(res, summary)
    base = next((b for b in res.variants if b.name == res.baseline), None)
    budget = _n(res.max_quality_drop)
    if v is None:
        return ('<div class="card"><p class="verdict">No variant was measured successfully; '
                "the tables below say why.</p></div>")
    label = "chosen plan" if summary is not None and summary.chosen else (
        "fastest within the budget" if budget is not None else "fastest variant")
    speed = _n(v.speedup)
    speed_txt = f"{speed:.2f}×" if speed is not None else "–"
    unit = _unit(res)
    facts = []
    thr, bthr = _n(v.throughput), _n(base.throughput) if base else None
    if thr is not None and bthr is not None:
        facts.append(f"{_e(_rate(thr))} {_e(unit)} against {_e(_rate(bthr))} for the baseline")
    lat, blat = _n(_d(v.latency_ms).get("p50")), _n(_d(base.latency_ms).get("p50")) if base else None
    if lat is not None and blat is not None:
        facts.append(f"{_e(_ms(lat))} per batch against {_e(_ms(blat))}"
                     + (f" (batch size {_e(_d(res.settings).get('batch_size'))})" if _d(res.settings).get("batch_size") else ""))
    q = _n(_d(v.quality).get(res.primary_metric))
    drop = _n(v.quality_drop)
    if q is not None:
        qual = f"{_e(res.primary_metric)} {q:.4f}"
        if drop is not None:
            qual += f", a drop of {drop:.4f}"
        if budget is not None:
            # bench's verdict when there is one (older files: the drop against the budget)
            within = v.verdict.rejection != "quality-drop" if v.verdict is not None \
                else drop is not None and drop <= budget
            qual += (f' — <span class="{"ok" if within else "over"}">'
                     f'{"within" if within else "over"} the budget of {budget:g}</span>')
    else:
        qual = "quality not measured"
    msg = f'<p class="message">{_e(summary.message)}</p>' if summary is not None and summary.message else ""
    model = ""
    if summary is not None and summary.model_path:
        model = (f'<p>Saved model: <code>{_e(summary.model_path)}</code></p>'
                 f"<pre class=\"load\">{html.escape(_load_lines(summary.model_path), quote=False)}</pre>")
    return (
        '<div class="card">'
        f'<div class="label">{_e(label)}</div><div class="plan">{_e(v.name)}</div>'
        f'<div class="big"><span class="speed">{_e(speed_txt)}</span> faster than <b>{_e(res.baseline)}</b> '
        "(how the model runs today), measured in the same run</div>"
        + (f'<ul class="facts">{"".join(f"<li>{f}</li>" for f in facts)}</ul>' if facts else "")
        + f'<p class="quality">{qual}</p>{msg}{model}'
        + "".join(f'<p class="note">{_e(n)}</p>' for n in result_notes(res)) + "</div>"
    )


def _section(res: Results, summary: Summary | None = None, extra: str = "") -> str:
    pts = _points(res)
    front = pareto_front(pts, res.higher_is_better)
    chosen = chosen_variant(res, summary)
    unit = _unit(res)
    head = ["variant", "speed-up", f"throughput ({unit})", "latency p50 (ms/batch)", "latency p95 (ms/batch)",
            "peak mem (MB)", "size (MB)", "FLOPs/item", "roofline", "quality", "quality drop", "budget", "error"]
    s = _d(res.settings)
    budget = _n(res.max_quality_drop)
    budget_txt = f"; quality budget: drop ≤ {budget:g} in {_e(res.primary_metric)}" if budget is not None else ""
    if res.min_quality:
        budget_txt += f"{'; quality budget: ' if budget is None else ', '}{_e(floors_text(res.min_quality))}"
    curves = "".join(_svg_tradeoff(str(v.name), v.details["tradeoff_curve"]) for v in res.variants
                     if v.error is None and isinstance(_d(v.details).get("tradeoff_curve"), list))
    return (
        f"<section><h2>{_e(res.workload)} — {_e(res.task)}</h2>"
        + _card(res, summary)
        + '<div class="plotrow">' + _svg_scatter(res, front)
        + (_legend(res, front, chosen.name if chosen else None) if pts else "") + "</div>"
        + f'<p class="note">Baseline <b>{_e(res.baseline)}</b>; batch size {_e(s.get("batch_size"))}, '
        f'{_e(s.get("items"))} items, {_e(s.get("repeats"))} interleaved rounds; speed-up = median of per-round '
        f"baseline/variant time ratios{budget_txt}. Red points and ★ are on the Pareto front (quality vs latency).</p>"
        + f"<details><summary>All measurements ({len(res.variants)} variants)</summary>"
        + '<div class="scroll"><table><thead><tr>' + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead><tbody>"
        + "".join(_row(v, res, front) for v in res.variants)
        + "</tbody></table></div>" + curves + "</details>"
        + _peers_html(res.peers) + extra + "</section>"
    )


def _peers_html(table: object) -> str:
    """The ``--peers`` table: what a user could pick instead, timed beside accelkit in the same run."""
    from accelkit.report.table import peer_cells, peer_columns, peer_label, peer_summary

    t = _d(table)
    rows = [r for r in t.get("rows", []) if isinstance(r, dict)] if isinstance(t.get("rows"), list) else []
    if not rows:
        return ""
    columns = peer_columns(t)
    head = ["row", "what", *(h for _, h in columns), "note"]

    def row(r: dict) -> str:
        cls = ' class="chosen"' if r.get("kind") == "accelkit" else (' class="err"' if r.get("error") else "")
        if r.get("error"):
            nums = f'<td colspan="{len(columns)}">–</td>'
            note = _e(r.get("error"))
        else:
            nums = "".join(f"<td>{_e(txt)}</td>" for txt in peer_cells(r, cos_digits=5, columns=columns))
            note = _e(r.get("note", ""))
        return (f"<tr{cls}><td>{_e(peer_label(r))}</td><td style='text-align:left'>{_e(r.get('what', ''))}</td>"
                f"{nums}<td style='text-align:left'>{note}</td></tr>")

    versions = ", ".join(f"{_e(k)} {_e(v)}" for k, v in _d(t.get("versions")).items() if v)
    return (
        "<h3>Against what you could pick instead</h3>"
        + (f'<p class="note">{_e(t.get("prompts"))} prompts × {_e(t.get("max_new_tokens", "?"))} new tokens '
           f'({_e(t.get("text", ""))}), batch {_e(t.get("batch_size", "?"))}, {_e(t.get("threads", "?"))} threads, '
           f'greedy, timed in {_e(t.get("repeats", "?"))} interleaved rounds; ratio = median of per-round '
           "reference/row time ratios; agreement: greedy tokens equal to the reference's.</p>"
           if "prompts" in t else
           f'<p class="note">{_e(t.get("sentences", "?"))} sentences ({_e(t.get("text", ""))}), batch '
           f'{_e(t.get("batch_size", "?"))}, {_e(t.get("threads", "?"))} threads, every row encoding from raw '
           f'sentences (tokenization included), timed in {_e(t.get("repeats", "?"))} interleaved rounds; ratio = '
           "median of per-round reference/row time ratios; cosine to the reference's embeddings.</p>")
        + '<div class="scroll"><table><thead><tr>' + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead><tbody>"
        + "".join(row(r) for r in rows) + "</tbody></table></div>"
        + "".join(f'<p class="note">{_e(line)}</p>' for line in peer_summary(t))
        + (f'<p class="note">Versions: {versions}.</p>' if versions else "")
    )


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;padding:0 1.5em;color:#222;max-width:1280px}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.machine{color:#666;font-size:13px}
.card{border:1px solid #d0d7de;border-radius:10px;padding:1em 1.4em;background:#f6f8fa;margin:1em 0;max-width:900px}
.card .label{text-transform:uppercase;font-size:12px;letter-spacing:.06em;color:#666}
.card .plan{font-family:ui-monospace,monospace;font-size:1.25em;font-weight:600;overflow-wrap:anywhere;margin:.2em 0}
.card .big{font-size:1.1em}.card .speed{font-size:2em;font-weight:700;color:#1a7f37}
.card .facts{margin:.4em 0;padding-left:1.2em}.card .quality{margin:.4em 0}
.ok{color:#1a7f37;font-weight:600}.over{color:#cf222e;font-weight:600}
pre.load{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:.6em;font-size:13px;white-space:pre-wrap}
.plotrow{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}.plotrow>svg{flex:0 1 700px}.plotrow>table.legend{flex:1 1 320px;margin-top:0}
svg.plot{max-width:100%;height:auto;border:1px solid #eee}
svg .tick{font-size:12px;fill:#444}svg .axis{font-size:13px;fill:#222}svg .num{font-size:11px;fill:#fff;font-weight:700}
table{border-collapse:collapse;font-size:13px;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}
table.legend .name{text-align:left}table.legend td.name{font-family:ui-monospace,monospace;max-width:20em}table.legend td.name span{white-space:nowrap}
table.legend td.num{text-align:center}
tr.front td.name,tr.front td:first-child{color:#d62728}
tr.chosen{background:#fff8c5}
tr.front td:first-child{font-weight:bold}
tr.err td{color:#999}
tr.details td{text-align:left;background:#fafafa}
details{margin:1em 0}summary{cursor:pointer;font-weight:600}
.scroll{overflow-x:auto}
.note{font-size:13px;color:#555;max-width:900px}
pre{font-size:11px;white-space:pre-wrap}
"""


# Belt and braces for a page built from files of unknown origin: even if a value slipped past
# escaping, the browser would run no script and fetch nothing (inline styles only).
_CSP = ("<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "img-src data:\">")


def render_html(results: Results | Sequence[Results], title: str = "accelkit report", extra_html: str = "",
                summaries: Sequence[Summary | None] | None = None, extras: Sequence[str] | None = None) -> str:
    """The whole page as a string.

    ``summaries[i]`` feeds the card of ``results[i]``; ``extras[i]`` is trusted HTML appended to
    its section (the optimize search table); ``extra_html`` goes after all sections (trusted).
    """
    items = [results] if isinstance(results, Results) else list(results)
    summaries = list(summaries or []) + [None] * (len(items) - len(summaries or []))
    extras = list(extras or []) + [""] * (len(items) - len(extras or []))
    machine = _d(items[0].machine) if items else {}
    cpu = _d(machine.get("cpu"))
    cuda = [d for d in _d(machine.get("cuda")).get("devices", []) or [] if isinstance(d, dict)]
    isa = cpu.get("isa", [])
    hw = f"{cpu.get('model', '?')}, {cpu.get('logical_cores', '?')} cores, ISA {', '.join(map(str, isa)) if isinstance(isa, list) else isa}"
    if cuda:
        hw += "; GPU " + ", ".join(str(d.get("name")) for d in cuda)
    versions = _d(machine.get("versions"))
    roof = _d(items[0].roofline) if items else {}
    roof_txt = ""
    if roof:
        vals = [_n(roof.get(k)) for k in ("fp32_gflops", "bf16_gflops", "int8_gops")]
        roof_txt = "; measured GEMM peak " + ", ".join(
            f"{name} {_e(f'{x:.0f}') if x is not None else '–'}" for name, x in zip(
                ("fp32 (GFLOP/s)", "bf16", "int8 (GOP/s)"), vals, strict=True))
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'>{_CSP}"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{_e(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1>"
        f"<p class='machine'>Machine: {_e(hw)}; torch {_e(versions.get('torch'))}{roof_txt}.</p>"
        + "".join(_section(r, s, x) for r, s, x in zip(items, summaries, extras, strict=True))
        + extra_html
        + "</body></html>"
    )


def write_html_report(results: Results | Sequence[Results], path: str | os.PathLike, title: str = "accelkit report",
                      extra_html: str = "", summaries: Sequence[Summary | None] | None = None) -> str:
    """Write the report atomically and return its path."""
    return str(write_text_atomic(path, render_html(results, title, extra_html, summaries)))
