"""The results table in the terminal, with rich."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from accelkit.report.results import Results

__all__ = ["print_table"]


def print_table(results: Results, console: Console | None = None) -> None:
    console = console or Console()
    unit = next((v.throughput_unit for v in results.variants), "items/s")
    table = Table(title=f"{results.workload} ({results.task}) — speed-up is the median of interleaved pair ratios")
    for col in ("variant", "speed-up", unit, "p50 ms/batch", "size MB", "quality", "drop", "budget"):
        table.add_column(col, justify="left" if col in ("variant", "quality") else "right")
    for v in results.variants:
        if v.error:
            table.add_row(v.name, "[red]failed[/red]", "", "", "", f"[red]{v.error[:80]}[/red]", "", "")
            continue
        table.add_row(
            v.name,
            f"{v.speedup:.2f}×" if v.speedup else "–",
            f"{v.throughput:,.0f}" if v.throughput else "–",
            f"{v.latency_ms['p50']:.2f}" if v.latency_ms else "–",
            f"{v.size_mb:.2f}" if v.size_mb else "–",
            " ".join(f"{k}={x:.4f}" for k, x in v.quality.items()),
            f"{v.quality_drop:.4f}" if v.quality_drop is not None else "–",
            {True: "[green]ok[/green]", False: "[red]over[/red]", None: "–"}[v.meets_budget],
        )
    console.print(table)
