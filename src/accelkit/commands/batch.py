"""``accelkit run``: a shipped model folder over a corpus file, into Parquet parts (a thin shell
over ``accelkit.batch_run.run_batch``)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from accelkit.commands import VERBOSE_HELP

__all__ = ["register"]


def run(
    model_dir: Annotated[Path, typer.Argument(help="a shipped model folder (accelkit export --model ...)")],
    input: Annotated[Path, typer.Option("--input", "-i", help=".txt (one item a line), .jsonl, .csv/.tsv, "
                                        "a .parquet file or a folder of Parquet parts")],
    output: Annotated[Path, typer.Option("--output", "-o", help="folder for the Parquet parts and "
                                         "_summary.json")],
    engine: Annotated[str | None, typer.Option(help="ray | local (default: ray when installed)")] = None,
    text_column: Annotated[str | None, typer.Option(help="the text column/key of a .jsonl/.csv/Parquet "
                                                    "input (default: text, sentence, or the only string)")] = None,
    id_column: Annotated[str | None, typer.Option(help="the id column/key (default: the row number)")] = None,
    block_size: Annotated[int, typer.Option(help="rows per block: one Parquet part each, the unit of "
                                            "--resume")] = 1000,
    batch_size: Annotated[int, typer.Option(help="items per model call")] = 32,
    on_bad_row: Annotated[str, typer.Option(help="skip (count it, report it in the summary) | fail")] = "skip",
    resume: Annotated[bool, typer.Option(help="keep the parts an interrupted run wrote; run the rest")] = False,
    overwrite: Annotated[bool, typer.Option(help="write into a folder holding other files (they are kept), "
                                            "or replace an earlier run's parts")] = False,
    address: Annotated[str | None, typer.Option(help="a Ray cluster's address (default: start a local Ray "
                                                "with this machine's cores)")] = None,
    actors: Annotated[int | None, typer.Option(help="Ray actors (default: the cluster's CPUs / threads)")] = None,
    threads: Annotated[int | None, typer.Option(help="threads per Ray actor (default 1), or of the local "
                                                "engine (default: every core)")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="text-generation models: tokens written after each "
                                                       "prompt (default: the number it was measured with)")] = None,
    seed: Annotated[int | None, typer.Option(help="text-generation models: sample (the model's own temperature, "
                                             "top-k, top-p) instead of greedy decoding; the same seed writes "
                                             "the same text")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", help=VERBOSE_HELP)] = False,
) -> None:
    """Run MODEL_DIR's task over --input (embeddings, label and score, or generated text) into Parquet
    parts in --output."""
    from accelkit.batch_run import RunConfig, run_batch
    from accelkit.quiet import quiet

    config = RunConfig(engine=engine, text_column=text_column, id_column=id_column, block_size=block_size,
                       batch_size=batch_size, on_bad_row=on_bad_row, resume=resume, overwrite=overwrite,
                       address=address, actors=actors, threads=threads,
                       max_new_tokens=max_new_tokens, seed=seed)
    with quiet(verbose=verbose, name="run") as q, _sigterm_interrupts():
        try:
            s = run_batch(model_dir, input, output, config, console=q.console)
        except KeyboardInterrupt as exc:
            q.echo(f"interrupted: the blocks finished so far are in {output}; add --resume to run the rest")
            raise typer.Exit(143 if isinstance(exc, _Terminated) else 130) from None
        bad = f", {s['bad_rows']} bad rows skipped (see _summary.json)" if s["bad_rows"] else ""
        q.echo(f"{s['items']:,} items → {s['output']} ({s['blocks']} parts, {s['blocks_resumed']} resumed{bad}); "
               f"{s['items_per_s']:,.1f} items/s on {s['actors']} × {s['threads_per_actor']} threads "
               f"({s['engine']})")


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's stop), raised like Ctrl-C so the run stops the Ray it started."""


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    # SIGTERM's default action ends the process at once: no ray.shutdown, no line saying what to do
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise _Terminated

    old = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
