"""The results table in the terminal (and as JSON, CSV or Markdown for scripts).

Read at 80 columns: a variant name is the one thing the reader must see, so it is never cut.
Names that fit beside the numbers get their own column; longer ones get a line of their own
with the numbers on the line below, aligned under the headers. The default table shows one
quality number (the workload's primary metric); ``wide=True`` adds p95 latency, peak memory,
build time and every other metric.

Every string from a results file is printed as rich ``Text`` (never parsed as markup), so a
variant named ``[/]oops`` prints as itself.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.padding import Padding
from rich.text import Text

from accelkit.errors import ConfigError
from accelkit.quality_floors import floors_text
from accelkit.report.results import Results, VariantResult

__all__ = ["FORMATS", "check_format", "format_results", "print_table", "table_rows"]

FORMATS = ("table", "json", "csv", "markdown")
_GAP = 2  # spaces between columns
_INDENT = 4  # the numbers line under a long name


def check_format(fmt: str) -> str:
    """``fmt`` if it is one of :data:`FORMATS`, else a ConfigError naming the choices."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    return fmt


@dataclass
class _Col:
    header: str  # with its unit: "ms/batch", "MB", "sentences/s"
    key: str  # the field name in json/csv output
    wide_only: bool = False


def _num(v: object) -> float | None:
    # results files are JSON from anywhere: a number that arrives as a string is shown, not trusted
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _columns(res: Results, wide: bool) -> list[_Col]:
    unit = next((v.throughput_unit for v in res.variants if v.throughput_unit), "items/s")
    metrics = _metrics(res)
    cols = [_Col("speed-up", "speedup"), _Col(str(unit), "throughput"), _Col("ms/batch", "latency_p50_ms"),
            _Col("p95 ms/batch", "latency_p95_ms", True), _Col("MB", "size_mb"), _Col("peak MB", "peak_memory_mb", True)]
    shown = metrics if wide else metrics[:1]
    cols += [_Col(m, f"quality.{m}") for m in shown]
    cols += [_Col("drop", "quality_drop"), _Col("budget", "meets_budget"), _Col("build s", "build_s", True)]
    if res.task == "train":  # how near the machine's peak a step runs matters; per-batch latency and size do not
        cols = [c for c in cols if c.key not in ("latency_p50_ms", "latency_p95_ms", "size_mb", "meets_budget")]
        cols.insert(2, _Col("MFU", "roofline_fraction"))
    return [c for c in cols if wide or not c.wide_only]


def _metrics(res: Results) -> list[str]:
    """The primary metric first, then every other metric any variant reports."""
    seen = [res.primary_metric] if res.primary_metric else []
    for v in res.variants:
        for k in v.quality if isinstance(v.quality, dict) else ():
            if k not in seen:
                seen.append(str(k))
    return seen


def _raw(v: VariantResult, key: str) -> object:
    lat = v.latency_ms if isinstance(v.latency_ms, dict) else {}
    if key == "latency_p50_ms":
        return lat.get("p50")
    if key == "latency_p95_ms":
        return lat.get("p95")
    if key.startswith("quality."):
        return (v.quality if isinstance(v.quality, dict) else {}).get(key[len("quality."):])
    return getattr(v, key, None)


def _cell(v: VariantResult, key: str) -> tuple[str, str]:
    """(text, style) of one cell."""
    raw = _raw(v, key)
    if key == "meets_budget":
        return {True: ("ok", "green"), False: ("over", "red")}.get(raw, ("–", ""))  # type: ignore[call-overload]
    x = _num(raw)
    if x is None:
        return ("–" if raw is None else str(raw)), ""
    if key == "speedup":
        return f"{x:.2f}×", "bold" if x > 1 else ""
    if key == "throughput":
        return (f"{x:,.0f}" if x >= 100 else f"{x:.3g}"), ""
    if key.startswith("quality.") or key == "quality_drop":
        return f"{x:.4f}", ""
    if key == "build_s":
        return f"{x:.1f}", ""
    if key == "roofline_fraction":
        return f"{x:.0%}", ""
    return (f"{x:,.1f}" if x >= 100 else f"{x:.2f}"), ""


def table_rows(res: Results, wide: bool = False) -> list[dict[str, object]]:
    """One flat dict per variant with the table's columns, raw values (for json/csv)."""
    rows = []
    for v in res.variants:
        row: dict[str, object] = {"variant": v.name}
        for c in _columns(res, wide):
            row[c.key] = _raw(v, c.key)
        if wide or v.error:
            row["throughput_unit"] = v.throughput_unit
        row["error"] = v.error
        rows.append(row)
    return rows


def format_results(results: Results | Sequence[Results], fmt: str, wide: bool = False) -> str:
    """The results as ``json`` (a list of row dicts per workload), ``csv`` or ``markdown`` text."""
    items = [results] if isinstance(results, Results) else list(results)
    check_format(fmt)
    if fmt == "json":
        doc = [{"workload": r.workload, "task": r.task, "baseline": r.baseline, "primary_metric": r.primary_metric,
                "rows": table_rows(r, wide)} for r in items]
        return json.dumps(doc[0] if len(doc) == 1 else doc, indent=2, default=str)
    if fmt == "csv":
        buf = io.StringIO()
        for r in items:
            rows = [{"workload": r.workload, **row} for row in table_rows(r, wide)]
            keys = list(dict.fromkeys(k for row in rows for k in row))
            writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        return buf.getvalue()
    if fmt == "markdown":
        out = []
        for r in items:
            cols = _columns(r, wide)
            out.append(f"**{_md(r.workload)} ({_md(r.task)})**, baseline `{_md(r.baseline)}`\n")
            out.append("| variant | " + " | ".join(_md(c.header) for c in cols) + " |")
            out.append("|---|" + "---:|" * len(cols))
            for v in r.variants:
                cells = ["failed: " + _md(str(v.error))] + [""] * (len(cols) - 1) if v.error else \
                    [_md(_cell(v, c.key)[0]) for c in cols]
                out.append(f"| {_md(v.name)} | " + " | ".join(cells) + " |")
            out.append("")
        return "\n".join(out)
    raise AssertionError(fmt)  # table is printed by print_table


def _md(text: str) -> str:
    # a pipe in a name would end the cell; backslash-escape it (and the backslash itself)
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def print_table(results: Results | Sequence[Results], console: Console | None = None, *, wide: bool = False,
                fmt: str = "table") -> None:
    """Print the results table (``fmt="table"``) or their json/csv/markdown text on ``console``."""
    console = console or Console()
    items = [results] if isinstance(results, Results) else list(results)
    if fmt != "table":
        console.out(format_results(items, fmt, wide), highlight=False)
        return
    for res in items:
        _print_one(res, console, wide)


def _print_one(res: Results, console: Console, wide: bool) -> None:
    cols = _columns(res, wide)
    title = Text(f"{res.workload} ({res.task})", style="bold")
    title.append(f" — speed-up: median of interleaved pair ratios against {res.baseline}", style="dim")
    budget = _num(res.max_quality_drop)
    limits = ([f"{res.primary_metric} drop ≤ {budget:g}"] if budget is not None and res.primary_metric else []) \
        + ([floors_text(res.min_quality)] if res.min_quality else [])
    if limits:
        title.append(f"; budget: {', '.join(limits)}", style="dim")
    console.print(title)
    _print_rows(console, "variant", [c.header for c in cols], [
        (str(v.name), None, Text("failed: " + str(v.error), style="red")) if v.error
        else (str(v.name), [_cell(v, c.key) for c in cols], None) for v in res.variants])
    from accelkit.report.results import result_notes

    for note in result_notes(res):
        console.print(Text(note, style="dim"))


def _print_rows(console: Console, label: str, heads: list[str],
                rows: list[tuple[str, list[tuple[str, str]] | None, Text | None]]) -> None:
    """Rows of right-aligned numbers under bold ``heads``: (name, its (text, style) cells, or None
    and the error that stands in for them). The names are a column headed ``label`` when every one
    fits beside the numbers; else each name has a line of its own, above its numbers."""
    cells = [row_cells for _, row_cells, _ in rows if row_cells is not None]
    widths = [max([len(h)] + [len(c[i][0]) for c in cells]) for i, h in enumerate(heads)]
    numbers_w = sum(widths) + _GAP * (len(heads) - 1)
    name_w = max([len(label)] + [len(name) for name, _, _ in rows])
    inline = name_w + _GAP + numbers_w <= console.width
    lead = name_w + _GAP if inline else _INDENT

    def numbers_line(texts: list[tuple[str, str]]) -> Text:
        line = Text()
        for i, ((s, style), w) in enumerate(zip(texts, widths, strict=True)):
            if i:
                line.append(" " * _GAP)
            line.append(s.rjust(w), style=style or None)
        return line

    # stacked: the names have their own lines, so the header holds only the number columns
    header = Text((label.ljust(name_w) + " " * _GAP) if inline else " " * lead, style="bold")
    header.append_text(numbers_line([(h, "bold") for h in heads]))
    console.print(header, no_wrap=True, overflow="ignore", crop=False)
    console.print(Text("─" * min(console.width, lead + numbers_w), style="dim"))
    for name, row_cells, error in rows:
        if row_cells is None:
            console.print(Text(name))
            console.print(Padding(error or Text(""), (0, 0, 0, _INDENT), expand=False))
        elif inline:
            console.print(Text(name.ljust(name_w) + " " * _GAP).append_text(numbers_line(row_cells)),
                          no_wrap=True, overflow="ignore", crop=False)
        else:
            console.print(Text(name, style="bold"))  # wraps (without cutting) only when wider than the terminal
            console.print(Text(" " * _INDENT).append_text(numbers_line(row_cells)), no_wrap=True, overflow="ignore",
                          crop=False)


def peer_summary(table: dict) -> list[str]:
    """The peer table's verdict lines: what the reference is, the best peer, accelkit against it."""
    rows = [r for r in table.get("rows", []) if isinstance(r, dict)]
    by_name = {str(r.get("name")): r for r in rows}
    lines = []
    ref = by_name.get(str(table.get("reference")))
    if ref is not None:
        lines.append(f"reference (1.00×): {ref.get('name')}, {ref.get('what', '')}")
    best = by_name.get(str(table.get("best_peer")))
    keeps = _num(table.get("keeps_quality")) or 0.99
    metric = "greedy agreement" if table.get("quality_metric") == "greedy_agreement" else "mean cosine"
    if best is not None and _num(best.get("ratio")) is not None:
        lines.append(f"fastest peer keeping {metric} ≥ {keeps:g}: {best.get('name')} at {_num(best['ratio']):.2f}×")
        own = by_name.get(str(table.get("best_peer_own_batch")))
        if own is not None and _num(own.get("ratio")) is not None:
            lines.append(f"each row at its own best batch size (throughput): fastest peer {own.get('name')} "
                         f"(batch {own.get('batch_size')}) at {_num(own['ratio']):.2f}×")
        for r in rows:
            vs = _num(r.get("vs_best_peer"))
            if r.get("kind") == "accelkit" and vs is not None:
                same = "at its own best batch" if r.get("batch_rule") == "own best" else "at the same batch"
                lines.append(f"{r.get('name')}: {vs:.2f}× the fastest peer {same}")
    elif rows:
        lines.append(f"no peer ran and kept {metric} ≥ {keeps:g}")
    return lines


_EMBEDDING_COLUMNS = [("sentences_per_s", "sentences/s"), ("ratio", "vs ref"), ("cosine_mean", "cos mean"),
                      ("cosine_min", "cos min")]


def peer_columns(table: dict) -> list[tuple[str, str]]:
    """(row key, heading) of each number a peer table shows: a table names its own in ``columns``
    (text generation: tokens/s, agreement); sentence-embedding tables, the default, show none."""
    cols = table.get("columns") if isinstance(table, dict) else None
    if isinstance(cols, list) and cols and all(isinstance(c, list | tuple) and len(c) == 2 for c in cols):
        return [(str(k), str(h)) for k, h in cols]
    return list(_EMBEDDING_COLUMNS)


def peer_cells(row: dict, cos_digits: int = 4, columns: list[tuple[str, str]] | None = None) -> list[str]:
    """A peer row's numbers as text: rates (``*_per_s``) whole, ``ratio`` with ×, other
    quality figures to ``cos_digits`` places ("–" where absent or not a finite number: the table
    comes from a results file of any origin)."""
    cells = []
    for key, _ in columns or _EMBEDDING_COLUMNS:
        x = _num(row.get(key))
        x = x if x is not None and math.isfinite(x) else None
        if x is None:
            cells.append("–")
        elif key.endswith("_per_s"):
            cells.append(f"{x:,.0f}")
        elif key == "ratio":
            cells.append(f"{x:.2f}×")
        elif key == "first_divergence":
            cells.append(f"{x:.1f}")
        else:
            cells.append(f"{x:.{cos_digits}f}")
    return cells


def peer_label(row: dict) -> str:
    """A row's name, with its batch size where it ran at its own best one."""
    name = str(row.get("name"))
    return f"{name} ({row.get('batch_size')})" if row.get("batch_rule") == "own best" and row.get("batch_size") else name


def print_peers(table: dict, console: Console | None = None) -> None:
    """The ``--peers`` table: each row's sentences/s, ratio to the reference and cosine to it."""
    console = console or Console()
    rows = [r for r in table.get("rows", []) if isinstance(r, dict)] if isinstance(table, dict) else []
    if not rows:
        return
    columns = peer_columns(table)
    title = Text("\npeers", style="bold")
    items = (f"{table['prompts']} prompts × {table.get('max_new_tokens', '?')} new tokens" if "prompts" in table
             else f"{table.get('sentences', '?')} sentences")
    title.append(f" — {items}, batch {table.get('batch_size', '?')}, "
                 f"{table.get('threads', '?')} threads, median of {table.get('repeats', '?')} interleaved rounds",
                 style="dim")
    console.print(title)
    _print_rows(console, "row", [h for _, h in columns], [
        (peer_label(r), None, Text(str(r["error"]), style="dim")) if r.get("error")
        else (peer_label(r), [(c, "") for c in peer_cells(r, columns=columns)], None) for r in rows])
    for line in peer_summary(table):
        console.print(Text(line, style="dim"))
