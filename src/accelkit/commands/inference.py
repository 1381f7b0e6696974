"""Inference commands: ``export`` (build a variant and save it) and ``load-check`` (load and verify)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from accelkit.commands import (
    VERBOSE_HELP,
    CalibSizeOpt,
    DataOpt,
    DoSampleOpt,
    DraftOpt,
    LabelColumnOpt,
    MaxNewTokensOpt,
    ModelOpt,
    OutputOpt,
    SeedOpt,
    TaskOpt,
    TextColumnOpt,
    model_options,
    resolve_workload,
)

__all__ = ["register"]


def export(
    variant: Annotated[str, typer.Option("--variant", "-v", help="variant name, '+' composes, e.g. dynamic-padding+int8-aware")],
    out: Annotated[Path, typer.Option("--out", "-o", help="directory to write (plan.json + model.onnx or model.safetensors)")],
    workload: Annotated[str, typer.Option("--workload", "-w", help="minilm | digits | gpt-mini | package.module:function")] = "minilm",
    batch_size: Annotated[int | None, typer.Option(help="default: the workload's")] = None,
    overwrite: Annotated[bool, typer.Option(help="write into a folder that holds other files (only accelkit's own are replaced; the rest are kept)")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", help=VERBOSE_HELP)] = False,
    model: ModelOpt = None,
    data: DataOpt = None,
    task: TaskOpt = None,
    text_column: TextColumnOpt = None,
    label_column: LabelColumnOpt = None,
    calib_size: CalibSizeOpt = None,
    output: OutputOpt = None,
    max_new_tokens: MaxNewTokensOpt = None,
    draft: DraftOpt = None,
    do_sample: DoSampleOpt = False,
    seed: SeedOpt = None,
) -> None:
    """Build --variant on the workload's baseline and save it to --out; accelkit.load(out) restores it."""
    from accelkit.quiet import quiet
    from accelkit.saving import save
    from accelkit.variants import build_variant
    options = model_options(model, data, task, text_column, label_column, calib_size, output,
                            max_new_tokens=max_new_tokens, draft=draft, do_sample=do_sample,
                            seed=seed)
    # the log goes to the cache, not into the saved folder: that holds only verified model files
    with quiet(verbose=verbose, name="export") as q:
        wl = resolve_workload(workload, options)
        settings = wl.default_settings(batch_size)
        q.phase(f"building {variant}")
        built = build_variant(variant, wl.build_model(), settings, wl)
        q.phase(f"saving to {out}")
        # the plan as applied, each step with its config (what a self-tuning step chose)
        path = save(built, out, built.plan or variant, workload=wl, overwrite=overwrite)
        kept = [k["layer"] for k in built.details.get("kept_layers", [])]
        shipped = "self-contained" if _saved_format(path).startswith("hf-") else "loaded onto the workload's architecture"
        q.echo(f"saved {variant} of {wl.name} to {path} ({shipped})" + (f"; kept in float: {kept}" if kept else ""))


def _saved_format(path: Path) -> str:
    import json

    return str(json.loads((path / "plan.json").read_text(encoding="utf-8")).get("format", ""))


def register(app: typer.Typer) -> None:
    app.command("export")(export)
