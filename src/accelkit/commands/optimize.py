"""``accelkit optimize``: the search, from the command line."""

from __future__ import annotations

import math
import re
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
from accelkit.errors import ConfigError
from accelkit.quality_floors import parse_quality_floors

__all__ = ["check_quality_budget", "parse_duration", "register"]


def parse_duration(text: str) -> float:
    """'90s', '10m', '1h', '1h30m' or plain seconds → seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ConfigError(f"time budget {text!r}: expected e.g. 90s, 10m, 1h30m")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def check_quality_budget(max_quality_drop: float) -> float:
    """A NaN budget passes every screening and fails every final check; inf or < 0 means nothing."""
    if not math.isfinite(max_quality_drop) or max_quality_drop < 0:
        raise ConfigError(f"--max-quality-drop {max_quality_drop!r}: expected a finite number >= 0, e.g. 0.01")
    return max_quality_drop


def optimize(
    workload: Annotated[str, typer.Option("--workload", "-w", help="minilm | digits | gpt-mini | package.module:function")] = "minilm",
    max_quality_drop: Annotated[float, typer.Option(help="budget in the workload's metric (minilm: cosine, digits: accuracy fraction)")] = 0.01,
    min_quality: Annotated[list[str] | None, typer.Option(metavar="METRIC=NUMBER", help="a floor on any quality metric, e.g. cosine_min=0.97 (the worst sentence); repeat for more")] = None,
    objective: Annotated[str, typer.Option(help="throughput | latency | memory | size")] = "throughput",
    time_budget: Annotated[str, typer.Option(help="e.g. 10m")] = "10m",
    batch_size: Annotated[int | None, typer.Option(help="batch for the throughput objective")] = None,
    out: Annotated[Path, typer.Option(help="output folder")] = Path("out/optimize"),
    candidates: Annotated[str | None, typer.Option(help="comma-separated single techniques to search (default: all)")] = None,
    no_expensive: Annotated[bool, typer.Option("--no-expensive", help="skip techniques that train (distill, fine-tune)")] = False,
    screen_limit: Annotated[int, typer.Option(help="calibration items per screening pass, at most (at least 4 batches; fewer when a baseline pass over them would not fit the time budget)")] = 128,
    eval_limit: Annotated[int | None, typer.Option(help="held-out items for the final measurement")] = None,
    overwrite: Annotated[bool, typer.Option(help="write into an --out that holds other files (they are kept)")] = False,
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
    """Search every technique under a quality budget; write the model, plan.json, results.json, report.html."""
    from accelkit.optimize import OptimizeConfig
    from accelkit.optimize import optimize as run
    from accelkit.outdir import OPTIMIZE_FILES, prepare_output_dir

    check_quality_budget(max_quality_drop)
    floors = parse_quality_floors(min_quality)
    options = model_options(model, data, task, text_column, label_column, calib_size, output,
                            max_new_tokens=max_new_tokens, draft=draft, do_sample=do_sample,
                            seed=seed)
    if options:
        resolve_workload(workload, options)  # bad --model/--data fail now, before --out is touched
        workload = Path(options["model"]).name or options["model"]
    # before the search: a folder with the user's files is refused now, not after an hour of work
    prepare_output_dir(out, overwrite=overwrite, owned=OPTIMIZE_FILES)
    cfg = OptimizeConfig(
        workload, max_quality_drop, objective, batch_size, parse_duration(time_budget), screen_limit, eval_limit,
        candidates=[c.strip() for c in candidates.split(",")] if candidates else None,
        include_expensive=not no_expensive, overwrite=overwrite, model=options, min_quality=floors,
    )
    from accelkit.quiet import quiet

    with quiet(out / "log.txt", verbose=verbose, name="optimize") as q:
        res = run(cfg, out, console=q.console)
        q.echo(res.message)
        q.echo(f"report → {out / 'report.html'}")


def register(app: typer.Typer) -> None:
    app.command("optimize")(optimize)
