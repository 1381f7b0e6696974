"""A self-contained HTML report: every variant against the baseline, a Pareto plot, and the
calibration trade-off curve of each dynamic-inference variant.

No scripts, fonts or images from the network: the plot is inline SVG, so the page
opens offline and can be mailed as one file.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from typing import Any

from accelkit.report.results import Results, VariantResult, write_text_atomic

__all__ = ["pareto_front", "render_html", "write_html_report"]


def _fmt(v: float | None, digits: int = 3, suffix: str = "") -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}g}{suffix}" if abs(v) < 1e4 else f"{v:,.0f}{suffix}"
    return f"{v}{suffix}"


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


def _svg_scatter(res: Results, front: set[str]) -> str:
    pts = [
        (v.name, v.latency_ms["p50"], v.quality[res.primary_metric])
        for v in res.variants
        if v.error is None and v.latency_ms and res.primary_metric in v.quality
    ]
    if not pts:
        return "<p>No measured variant to plot.</p>"
    W, H, M = 640, 360, 60
    xs, ys = [p[1] for p in pts], [p[2] for p in pts]
    x0, x1 = 0.0, max(xs) * 1.1
    y0, y1 = min(ys), max(ys)
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 0.01, y1 + 0.01
    pad = (y1 - y0) * 0.1
    y0, y1 = y0 - pad, y1 + pad

    def sx(x: float) -> float:
        return M + (x - x0) / (x1 - x0) * (W - 2 * M)

    def sy(y: float) -> float:
        return H - M - (y - y0) / (y1 - y0) * (H - 2 * M)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" role="img">',
             f'<rect x="0" y="0" width="{W}" height="{H}" fill="#fff"/>',
             f'<line x1="{M}" y1="{H - M}" x2="{W - M}" y2="{H - M}" stroke="#333"/>',
             f'<line x1="{M}" y1="{M}" x2="{M}" y2="{H - M}" stroke="#333"/>',
             f'<text x="{W / 2}" y="{H - 15}" text-anchor="middle" font-size="12">latency per batch p50 (ms) — lower is better</text>',
             f'<text x="15" y="{H / 2}" transform="rotate(-90 15 {H / 2})" text-anchor="middle" font-size="12">'
             f'{html.escape(res.primary_metric)} ({"higher" if res.higher_is_better else "lower"} is better)</text>']
    for i in range(5):
        yv = y0 + (y1 - y0) * i / 4
        xv = x0 + (x1 - x0) * i / 4
        parts.append(f'<text x="{M - 5}" y="{sy(yv) + 4:.1f}" text-anchor="end" font-size="10">{yv:.4g}</text>')
        parts.append(f'<text x="{sx(xv):.1f}" y="{H - M + 14}" text-anchor="middle" font-size="10">{xv:.3g}</text>')
    on_front = sorted((p for p in pts if p[0] in front), key=lambda p: p[1])
    if len(on_front) > 1:
        path = " ".join(f"{sx(p[1]):.1f},{sy(p[2]):.1f}" for p in on_front)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#d62728" stroke-dasharray="4 3"/>')
    for name, lat, q in pts:
        color = "#d62728" if name in front else "#1f77b4"
        parts.append(f'<circle cx="{sx(lat):.1f}" cy="{sy(q):.1f}" r="5" fill="{color}"><title>{html.escape(name)}</title></circle>')
        parts.append(f'<text x="{sx(lat) + 7:.1f}" y="{sy(q) - 6:.1f}" font-size="10">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _svg_tradeoff(name: str, curve: Sequence[dict[str, Any]]) -> str:
    """One variant's calibration trade-off (early exit, routed depth, layer skipping): compute or
    layers saved against quality, one point per threshold setting it considered."""
    x_key = "compute_saved" if all("compute_saved" in p for p in curve) else "layers_saved"
    pts = sorted((float(p[x_key]), float(p["quality"])) for p in curve if x_key in p and "quality" in p)
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
             f'<title>{html.escape(name)} trade-off</title>',
             f'<line x1="{M}" y1="{H - M}" x2="{W - M}" y2="{H - M}" stroke="#333"/>',
             f'<line x1="{M}" y1="{M}" x2="{M}" y2="{H - M}" stroke="#333"/>',
             f'<text x="{W / 2}" y="{H - 12}" text-anchor="middle" font-size="11">{x_key.replace("_", " ")} '
             f'(calibration data)</text>',
             f'<text x="12" y="{H / 2}" transform="rotate(-90 12 {H / 2})" text-anchor="middle" font-size="11">quality</text>',
             f'<text x="{W / 2}" y="{M - 15}" text-anchor="middle" font-size="12">{html.escape(name)}</text>',
             f'<polyline points="{line}" fill="none" stroke="#1f77b4"/>']
    for i in range(3):
        yv, xv = y0 + (y1 - y0) * i / 2, x1 * i / 2
        parts.append(f'<text x="{M - 4}" y="{sy(yv) + 4:.1f}" text-anchor="end" font-size="10">{yv:.4g}</text>')
        parts.append(f'<text x="{sx(xv):.1f}" y="{H - M + 14}" text-anchor="middle" font-size="10">{xv:.0%}</text>')
    parts += [f'<circle cx="{sx(x):.1f}" cy="{sy(q):.1f}" r="2.5" fill="#1f77b4"/>' for x, q in pts]
    parts.append("</svg>")
    return "".join(parts)


def _row(v: VariantResult, res: Results, front: set[str]) -> str:
    q = ", ".join(f"{k}={val:.4g}" for k, val in v.quality.items())
    budget = {True: "✔", False: "✘", None: "–"}[v.meets_budget]
    cls = "err" if v.error else ("front" if v.name in front else "")
    cells = [
        html.escape(v.name) + (" ★" if v.name in front else ""),
        _fmt(v.speedup, 3, "×"),
        _fmt(v.throughput, 4),
        _fmt(v.latency_ms["p50"] if v.latency_ms else None),
        _fmt(v.latency_ms["p95"] if v.latency_ms else None),
        _fmt(v.peak_memory_mb, 4),
        _fmt(v.size_mb, 3),
        _fmt(v.flops_per_item, 3),
        _fmt(v.roofline_fraction * 100 if v.roofline_fraction else None, 3, "%"),
        html.escape(q) or "–",
        _fmt(v.quality_drop, 3),
        budget,
        html.escape(v.error or ""),
    ]
    row = f'<tr class="{cls}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
    if v.details:
        detail = html.escape(json.dumps(v.details, indent=1, default=str)[:20000])
        row += f'<tr class="details"><td colspan="{len(cells)}"><details><summary>what {html.escape(v.name)} decided</summary><pre>{detail}</pre></details></td></tr>'
    return row


def _section(res: Results) -> str:
    pts = [
        (v.name, v.latency_ms["p50"], v.quality[res.primary_metric])
        for v in res.variants
        if v.error is None and v.latency_ms and res.primary_metric in v.quality
    ]
    front = pareto_front(pts, res.higher_is_better)
    unit = next((v.throughput_unit for v in res.variants if v.throughput_unit), "items/s")
    head = ["variant", "speed-up", f"throughput ({unit})", "latency p50 (ms)", "latency p95 (ms)",
            "peak mem (MB)", "size (MB)", "FLOPs/item", "roofline", "quality", "quality drop", "budget", "error"]
    s = res.settings
    budget = f"; quality budget: drop ≤ {res.max_quality_drop:g} in {res.primary_metric}" if res.max_quality_drop is not None else ""
    return (
        f"<h2>{html.escape(res.workload)} — {html.escape(res.task)}</h2>"
        f"<p>Baseline <b>{html.escape(res.baseline)}</b>; batch size {s.get('batch_size')}, {s.get('items')} items, "
        f"{s.get('repeats')} interleaved rounds; speed-up = median of per-round baseline/variant time ratios{budget}. "
        "★ = on the Pareto front (quality vs latency).</p>"
        + _svg_scatter(res, front)
        + "<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"
        + "".join(_row(v, res, front) for v in res.variants)
        + "</tbody></table>"
        + "".join(_svg_tradeoff(v.name, v.details["tradeoff_curve"]) for v in res.variants
                  if v.error is None and isinstance((v.details or {}).get("tradeoff_curve"), list))
    )


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}
table{border-collapse:collapse;font-size:13px;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}
tr.front td:first-child{font-weight:bold;color:#d62728}
tr.err td{color:#999}
tr.details td{text-align:left;background:#fafafa}
pre{font-size:11px;white-space:pre-wrap}
"""


def render_html(results: Results | Sequence[Results], title: str = "accelkit report", extra_html: str = "") -> str:
    """The whole page as a string; ``extra_html`` is inserted after the sections (trusted HTML)."""
    items = [results] if isinstance(results, Results) else list(results)
    machine = items[0].machine if items else {}
    cpu = machine.get("cpu", {})
    cuda = machine.get("cuda", {}).get("devices", [])
    hw = f"{cpu.get('model', '?')}, {cpu.get('logical_cores', '?')} cores, ISA {', '.join(cpu.get('isa', []))}"
    if cuda:
        hw += "; GPU " + ", ".join(d["name"] for d in cuda)
    versions = machine.get("versions", {})
    roof = items[0].roofline if items else None
    roof_txt = (
        f"; measured GEMM peak fp32 {roof['fp32_gflops']:.0f} GFLOP/s, bf16 {roof['bf16_gflops'] or 0:.0f}, int8 {roof['int8_gops'] or 0:.0f} GOP/s"
        if roof else ""
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p>Machine: {html.escape(hw)}; torch {html.escape(str(versions.get('torch')))}{roof_txt}.</p>"
        + "".join(_section(r) for r in items)
        + extra_html
        + "</body></html>"
    )


def write_html_report(results: Results | Sequence[Results], path: str | os.PathLike, title: str = "accelkit report", extra_html: str = "") -> str:
    """Write the report atomically and return its path."""
    return str(write_text_atomic(path, render_html(results, title, extra_html)))
