"""The terminal table reads at 80 columns: names in full, one quality number, no markup surprises."""

import csv
import io
import json

import pytest
from rich.console import Console

from accelkit.errors import ConfigError
from accelkit.report.results import Results, VariantResult
from accelkit.report.table import format_results, print_table

LONG = "prune-structured-50+bf16+onnx-int8-static"
NAMES = ["baseline", "dynamic-padding+bf16", LONG, "[/]oops", "[bold red]x[/]"]


def _results() -> Results:
    def v(name: str, speedup: float, drop: float) -> VariantResult:
        return VariantResult(name, speedup=speedup, throughput=1180.4 * speedup, throughput_unit="sentences/s",
                             latency_ms={"p50": 54.2 / speedup, "p95": 60.0 / speedup}, size_mb=86.7,
                             peak_memory_mb=412.0, quality={"cosine_mean": 1 - drop, "cosine_min": 0.9 - drop},
                             quality_drop=drop, meets_budget=drop <= 0.01)

    variants = [v(n, 1.0 + i, 0.002 * i) for i, n in enumerate(NAMES[:-1])]
    variants.append(VariantResult(NAMES[-1], error="RuntimeError: " + "the exporter could not handle op foo " * 6))
    return Results("minilm", "infer", "baseline", variants, primary_metric="cosine_mean", max_quality_drop=0.01)


def _render(wide: bool = False) -> str:
    console = Console(width=80, record=True, file=io.StringIO())
    print_table(_results(), console, wide=wide)
    return console.export_text()


def test_every_name_appears_in_full_and_no_line_exceeds_80_columns():
    text = _render()
    lines = text.splitlines()
    for name in NAMES:
        assert any(name in line for line in lines), name
    assert "…" not in text
    assert max(len(line) for line in lines) <= 80
    # units are in the headers
    for unit in ("sentences/s", "ms/batch", "MB"):
        assert unit in text


def test_default_shows_the_primary_metric_only_and_wide_adds_the_rest():
    assert "cosine_mean" in _render() and "cosine_min" not in _render()
    wide = _render(wide=True)
    assert "cosine_min" in wide and "p95 ms/batch" in wide and "peak MB" in wide
    assert all(name in wide for name in NAMES)


def test_short_names_sit_in_a_column_beside_their_numbers():
    res = _results()
    res.variants = res.variants[:1]
    console = Console(width=80, record=True, file=io.StringIO())
    print_table(res, console)
    row = next(line for line in console.export_text().splitlines() if line.startswith("baseline"))
    assert "1.00×" in row and "1,180" in row


def test_failed_variant_is_its_reason_not_a_traceback():
    text = _render()
    assert "failed: RuntimeError: the exporter" in text and "Traceback" not in text


def test_formats_for_scripts():
    res = _results()
    doc = json.loads(format_results(res, "json"))
    assert [r["variant"] for r in doc["rows"]] == NAMES
    assert doc["rows"][1]["speedup"] == 2.0 and doc["rows"][1]["latency_p50_ms"] == pytest.approx(27.1)
    rows = list(csv.DictReader(io.StringIO(format_results(res, "csv"))))
    assert [r["variant"] for r in rows] == NAMES and "quality.cosine_mean" in rows[0]
    md = format_results(res, "markdown")
    assert f"| {LONG} |" in md and "| ms/batch |" in md
    with pytest.raises(ConfigError, match="--format 'xml'"):
        format_results(res, "xml")


def test_strings_where_numbers_belong_print_as_text():
    res = _results()
    res.variants[1].speedup = "[red]fast[/red]"  # a hand-edited results file
    console = Console(width=80, record=True, file=io.StringIO())
    print_table(res, console)
    assert "[red]fast[/red]" in console.export_text()


def test_a_training_table_shows_mfu_and_states_shape_steps_and_peaks():
    def v(name: str, speedup: float, mfu: float, loss: float) -> VariantResult:
        return VariantResult(name, speedup=speedup, throughput=1000 * speedup, throughput_unit="tokens/s",
                             roofline_fraction=mfu, quality={"val_loss": loss}, quality_drop=loss - 3.30,
                             details={"steps_trained": 24})

    res = Results("gpt-mini", "train", "fp32", [v("fp32", 1.0, 0.685, 3.30), v("bf16+compile+fused", 2.17, 0.58, 3.31)],
                  primary_metric="val_loss", higher_is_better=False,
                  settings={"size": "large", "batch_size": 8, "threads": 2, "flops_per_step": 116.8e9,
                            "model_config": {"n_embd": 512, "n_layer": 6, "block_size": 128}},
                  roofline={"fp32_gflops": 209.0, "bf16_gflops": 413.0, "int8_gops": None, "size": 256, "threads": 2})
    buf = io.StringIO()
    print_table(res, Console(file=buf, width=80))
    text = buf.getvalue()
    header = next(line for line in text.splitlines() if line.startswith("variant"))
    assert "MFU" in header and "ms/batch" not in header  # a step's share of the peak, not a batch latency
    row = next(line for line in text.splitlines() if line.startswith("bf16+compile+fused"))
    assert "2.17×" in row and "58%" in row
    flat = " ".join(text.split())
    assert "n_embd 512, 6 layers, T 128, batch 8, 116.8 GFLOP a step" in flat
    assert "every variant trained 24 steps" in flat and "fp32 209, bf16 413 GFLOP/s, 2 threads" in flat
    assert max(len(line) for line in text.splitlines()) <= 80
