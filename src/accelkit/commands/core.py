"""Core commands: ``env``, ``bench``, ``report``, ``demo``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from accelkit.commands import (
    MODEL_TASKS_HELP,
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
    TextColumnOpt,
    model_options,
    resolve_workload,
)
from accelkit.errors import ConfigError, UnknownVariantError
from accelkit.quality_floors import parse_quality_floors

__all__ = ["register"]


def _console() -> Console:
    return Console(stderr=False)


def env(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """What this machine offers (CUDA, bf16/fp16/TF32, AVX-512 BF16/VNNI, AMX) and the path to take."""
    from accelkit.hardware import probe
    from accelkit.techniques.registry import list_techniques, unavailable_reason

    facts = probe()
    # what this machine or install cannot run, and why (a missing package, a missing CPU feature)
    facts["not_offered"] = {t.name: why for t in list_techniques() if (why := unavailable_reason(t))}
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        return
    c = facts["cpu"]
    out = _console()
    out.print(f"[bold]CPU[/bold]   {c['model']} ({c['arch']}), {c['logical_cores']} cores, {c['memory_gb']} GiB")
    out.print(f"      ISA: {', '.join(c['isa']) or 'none of interest'} (torch kernels: {c['torch_capability']})")
    if facts["cuda"]["devices"]:
        for d in facts["cuda"]["devices"]:
            caps = [k for k in ("bf16", "fp16", "tf32", "fp8", "sparse_2_4") if d[k]]
            out.print(f"[bold]CUDA[/bold]  {d['index']}: {d['name']}, {d['memory_gb']} GiB, cc {d['compute_capability']}, {', '.join(caps)}")
    else:
        out.print("[bold]CUDA[/bold]  none")
    out.print(f"[bold]MPS[/bold]   {'yes' if facts['mps'] else 'no'}")
    v = facts["versions"]
    out.print("[bold]libs[/bold]  " + ", ".join(f"{k} {val}" for k, val in v.items() if val))
    r = facts["recommend"]
    out.print(
        f"[bold]use[/bold]   device {r['device']}; train {r['train_precision']}; infer {r['infer_precision']}; "
        f"quantization {r['quant_backend']}; {r['threads']} threads; {r['dataloader_workers']} DataLoader workers"
    )
    for reason in r["reasons"]:
        out.print(f"      - {reason}")
    if facts["not_offered"]:
        out.print("[bold]not offered here[/bold]")
        for name, why in facts["not_offered"].items():
            out.print(f"      - {escape(name)}: {escape(why)}")


def bench(
    workload: Annotated[str | None, typer.Option("--workload", "-w", help="minilm | digits | gpt-mini | images | package.module:function [default: minilm; images for --task data; digits for --task train]")] = None,
    task: Annotated[str, typer.Option(help=f"infer | train | data; with --model, the model's task instead: {MODEL_TASKS_HELP} [default: from its config]")] = "infer",
    variants: Annotated[str | None, typer.Option(help="comma-separated names, '+' composes; 'all' runs every one [default: all]")] = None,
    list_: Annotated[bool, typer.Option("--list", help="print the variant names available, one a line")] = False,
    out: Annotated[Path | None, typer.Option(help="write results JSON here")] = None,
    html: Annotated[Path | None, typer.Option(help="also write the HTML report here")] = None,
    batch_size: Annotated[int | None, typer.Option(help="default: the workload's")] = None,
    repeats: Annotated[int, typer.Option(help="interleaved rounds")] = 5,
    limit: Annotated[int | None, typer.Option(help="use only the first N evaluation items")] = None,
    device: Annotated[str, typer.Option(help="cpu | cuda | cuda:N | mps")] = "cpu",
    max_quality_drop: Annotated[float | None, typer.Option(help="mark variants within this drop of the primary metric")] = None,
    min_quality: Annotated[list[str] | None, typer.Option(metavar="METRIC=NUMBER", help="mark variants below a floor on any quality metric, e.g. cosine_min=0.97; repeat for more")] = None,
    wide: Annotated[bool, typer.Option("--wide", help="every column: p95, memory, every quality metric")] = False,
    fmt: Annotated[str, typer.Option("--format", help="table | json | csv | markdown (for scripts)")] = "table",
    verbose: Annotated[bool, typer.Option("--verbose", help=VERBOSE_HELP)] = False,
    model: ModelOpt = None,
    data: DataOpt = None,
    text_column: TextColumnOpt = None,
    label_column: LabelColumnOpt = None,
    calib_size: CalibSizeOpt = None,
    output: OutputOpt = None,
    max_new_tokens: MaxNewTokensOpt = None,
    draft: DraftOpt = None,
    do_sample: DoSampleOpt = False,
    seed: SeedOpt = None,
    size: Annotated[str, typer.Option(help="--task train: gpt-mini shape, default | large (GEMM-bound: where bf16 pays)")] = "default",
    threads: Annotated[int | None, typer.Option(help="--task train: torch threads for the run [default: torch's own]")] = None,
    peers: Annotated[bool, typer.Option("--peers", help="also time what you could pick instead beside accelkit's best, on the same data: sentence-transformers' own backends (fp32, bf16, ONNX, ONNX int8, OpenVINO, OpenVINO int8) for a sentence model; HF generate with a static cache + torch.compile and optimum-intel OVModelForCausalLM for --task text-generation: pip install -e '.[peers]'")] = False,
) -> None:
    """Measure variants side by side against the default run (how you run the model today)."""
    from accelkit.bench import check_device, task_runner
    from accelkit.quiet import quiet
    from accelkit.report.results import check_writable, save_results
    from accelkit.report.table import check_format, print_table
    from accelkit.variants import list_variants

    check_format(fmt)
    from accelkit.tasks import list_tasks

    # with --model, --task may name the model's task (bench then measures inference)
    task_name, task = (task, "infer") if task in list_tasks() else (None, task)
    runner = task_runner(task)
    if max_quality_drop is not None:
        from accelkit.commands.optimize import check_quality_budget

        check_quality_budget(max_quality_drop)
    floors = parse_quality_floors(min_quality)
    options = model_options(model, data, task_name, text_column, label_column, calib_size, output,
                            max_new_tokens=max_new_tokens, draft=draft, do_sample=do_sample,
                            seed=seed)
    workload = workload or {"data": "images", "train": "digits"}.get(task, "minilm")
    check_device(device)
    for path in (out, html):
        if path is not None:
            check_writable(path)
    variants = variants or "all"
    if peers and task != "infer":
        raise ConfigError("--peers measures inference (sentence-transformers backends); drop --task or --peers")
    if task != "infer" and floors:
        raise ConfigError("--min-quality applies to inference benchmarks; drop it for --task " + task)
    if task != "train" and (size != "default" or threads is not None):
        raise ConfigError("--size and --threads apply to --task train; drop them")
    if task != "infer":
        if task == "train" and not list_:
            # compile and inductor talk while they train: their output goes to the log, ours stays
            log_to = out.with_name(out.stem + ".log.txt") if out is not None else None
            with quiet(log_to, verbose=verbose, name="bench") as q:
                runner(workload=workload, variants=variants, out=out, html=html, repeats=repeats, size=size,
                       threads=threads, batch_size=batch_size, console=q.console, model_options=options)
            return
        runner(workload=workload, variants=variants, list_only=list_, out=out, html=html, repeats=repeats,
               **({"model_options": options} if task == "train" else {}))
        return
    log_to = out.with_name(out.stem + ".log.txt") if out is not None else None
    # building a workload already talks (weight-loading bars, a user's module): capture from here
    with quiet(log_to, verbose=verbose, name="bench") as q:
        wl = resolve_workload(workload, options)
        available = list_variants(wl)
        if list_:
            q.echo("\n".join(available))
            return
        names = available if variants.strip() == "all" else [v.strip() for v in variants.split(",") if v.strip()]
        if not names:
            raise UnknownVariantError("--variants is empty; name at least one, e.g. --variants baseline,bf16")
        console = q.console
        if peers:
            from accelkit.peers import peers_for

            peer_family = peers_for(wl)
        with console.status("starting") as status:
            from accelkit.bench import bench as run_bench

            results = run_bench(
                wl, names, batch_size=batch_size, repeats=repeats, limit=limit, device=device,
                max_quality_drop=max_quality_drop, min_quality=floors, progress=lambda msg: status.update(escape(msg)),
                keep_built=peers,
            )
            if peers:
                from accelkit.peers import generation_peers_beside_bench, peers_beside_bench

                beside = generation_peers_beside_bench if peer_family == "generation" else peers_beside_bench
                results.peers = beside(wl, results, max_quality_drop=max_quality_drop, repeats=repeats,
                                       limit=limit, progress=lambda msg: status.update(escape(msg)))
                results.built = {}  # the peers are measured: free the variants' models
        # results first: a crash while printing must not lose a finished benchmark
        if out is not None:
            save_results(results, out)
        if html is not None:
            from accelkit.report.html import write_html_report

            write_html_report(results, html)
        print_table(results, console, wide=wide, fmt=fmt)
        if fmt == "table" and results.peers:
            from accelkit.report.table import print_peers

            print_peers(results.peers, console)
        if fmt == "table":
            if out is not None:
                q.echo(f"results → {out}")
            if html is not None:
                q.echo(f"report → {html}")


def _search_block(path: Path) -> tuple:
    """(Summary, search table HTML) from an optimize results.json's ``search`` block, else (None, "").

    ``Results`` keeps only the measurements; the search's choice and verdicts sit beside them in
    the same file, and the saved model (if any) in the ``model`` folder next to it."""
    from accelkit.optimize.report import search_details, search_summary

    try:
        block = json.loads(path.read_text(encoding="utf-8")).get("search")
    except (OSError, ValueError, AttributeError):
        return None, ""
    if not isinstance(block, dict):
        return None, ""
    best = block.get("best") if isinstance(block.get("best"), str) else None
    message = block.get("message") if isinstance(block.get("message"), str) else ""
    candidates = block.get("candidates") if isinstance(block.get("candidates"), list) else []
    return search_summary(best, message, path.parent), search_details(candidates, best) if candidates else ""


def report(
    results: Annotated[list[Path], typer.Argument(help="one or more results JSON files")],
    output: Annotated[Path, typer.Option("-o", "--output", help="HTML file to write")] = Path("out/report.html"),
    title: Annotated[str, typer.Option(help="page title")] = "accelkit report",
    wide: Annotated[bool, typer.Option("--wide", help="every column: p95, memory, every quality metric")] = False,
    fmt: Annotated[str, typer.Option("--format", help="table | json | csv | markdown (for scripts)")] = "table",
) -> None:
    """Write a self-contained HTML report (opens offline) from results files; print their tables."""
    from accelkit.report.html import render_html
    from accelkit.report.results import check_writable, load_results, write_text_atomic
    from accelkit.report.table import check_format, print_table

    check_format(fmt)
    check_writable(output)
    loaded = [load_results(p) for p in results]
    summaries, extras = zip(*(_search_block(p) for p in results), strict=True) if results else ((), ())
    write_text_atomic(output, render_html(loaded, title, summaries=summaries, extras=extras))
    console = _console()
    for r in loaded:
        print_table(r, console, wide=wide, fmt=fmt)
    if fmt == "table":
        console.print(escape(f"report → {output}"), highlight=False)


def demo(
    out: Annotated[Path, typer.Option(help="output folder")] = Path("out"),
    verbose: Annotated[bool, typer.Option("--verbose", help=VERBOSE_HELP)] = False,
) -> None:
    """The main job on the embedded workloads: optimize minilm and digits, write out/report.html."""
    import importlib.util

    from accelkit.quiet import quiet

    if importlib.util.find_spec("accelkit.optimize") is not None:
        from accelkit.optimize import run_demo

        with quiet(out / "log.txt", verbose=verbose, name="demo") as q:
            run_demo(out, console=q.console)
        return
    from accelkit.bench import bench as run_bench
    from accelkit.report.html import write_html_report
    from accelkit.report.results import save_results
    from accelkit.report.table import print_table

    console = _console()
    all_results = []
    for wl, names, kw in (
        ("minilm", ["fixed-length", "bf16", "bf16-cast"], {"limit": 256}),
        ("digits", ["bf16"], {}),
    ):
        with console.status(wl) as status:
            res = run_bench(wl, names, repeats=5, progress=lambda m, s=status, w=wl: s.update(f"{w}: {m}"), **kw)
        print_table(res, console)
        save_results(res, out / f"{wl}-results.json")
        all_results.append(res)
    path = write_html_report(all_results, out / "report.html", title="accelkit demo")
    console.print(f"report → {path}")


def register(app: typer.Typer) -> None:
    app.command("env")(env)
    app.command("bench")(bench)
    app.command("report")(report)
    app.command("demo")(demo)
