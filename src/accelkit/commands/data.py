"""Data commands: ``cache build|info|clear`` and ``tune-loader``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from accelkit.errors import UnknownWorkloadError

__all__ = ["register"]

DATA_WORKLOADS = ("images",)

cache_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Build, inspect and clear dataset caches.")


def _image_dataset(workload: str, image_size: int, limit: int | None) -> Any:
    if workload not in DATA_WORKLOADS:
        raise UnknownWorkloadError(
            f"--workload {workload!r}: data commands know {', '.join(DATA_WORKLOADS)}; "
            "wrap your own dataset with accelkit.data.CachedDataset in Python"
        )
    from accelkit.data.images import images_workload

    ds = images_workload(image_size=image_size)
    if limit is not None:
        ds.samples = ds.samples[:limit]
    return ds


CacheDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir", help="default: $ACCELKIT_CACHE/datasets or ~/.cache/accelkit/datasets"
    ),
]
WorkloadOpt = Annotated[str, typer.Option("--workload", "-w", help="images")]
ImageSizeOpt = Annotated[int, typer.Option(help="pixel size the digits are rendered to on disk")]
LimitOpt = Annotated[int | None, typer.Option(help="use only the first N images")]


@cache_app.command("build")
def cache_build(
    workload: WorkloadOpt = "images",
    cache_dir: CacheDirOpt = None,
    precompute_epochs: Annotated[
        int, typer.Option(help="also store K epochs of random augmentation")
    ] = 0,
    max_mb: Annotated[
        float | None, typer.Option(help="size limit of the cache directory in MiB")
    ] = None,
    image_size: ImageSizeOpt = 128,
    limit: LimitOpt = None,
) -> None:
    """Decode (and optionally augment) the workload once into the on-disk cache."""
    from accelkit.data.cache import CacheConfig, CachedDataset

    ds = _image_dataset(workload, image_size, limit)
    config = CacheConfig(
        cache_dir=str(cache_dir) if cache_dir else None,
        precompute_epochs=precompute_epochs,
        max_bytes=int(max_mb * 2**20) if max_mb is not None else None,
    )
    t0 = time.perf_counter()
    cached = CachedDataset(ds, config, progress=True)
    typer.echo(
        f"cache {cached.entry} ready: {len(cached)} samples, {cached.nbytes() / 2**20:.1f} MiB, "
        f"{time.perf_counter() - t0:.1f} s"
    )


@cache_app.command("info")
def cache_info_cmd(
    cache_dir: CacheDirOpt = None,
    verify: Annotated[bool, typer.Option(help="recompute checksums (slower)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """List cache entries with size, sample count, precomputed epochs and seed, validity."""
    from accelkit.data.cache import cache_info

    rows = cache_info(cache_dir, verify="full" if verify else "size")
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no cache entries")
        return
    # fits 80 columns: no vertical rules; a long entry name or reason folds onto the next line
    table = Table(box=box.SIMPLE_HEAD)
    for col in ("name", "samples", "MiB", "precomputed", "seed", "valid"):
        table.add_column(col, overflow="fold", justify="left" if col in ("name", "valid") else "right")
    for r in rows:
        seed = (r["augment"] or {}).get("seed", "")
        table.add_row(
            Text(str(r["name"])),
            str(r["n"]),
            f"{r['bytes'] / 2**20:.1f}",
            str(r["precompute_epochs"] or 0),
            str(seed),
            Text("yes" if r["valid"] else f"no ({r['reason']})"),
        )
    Console().print(table)


@cache_app.command("clear")
def cache_clear_cmd(
    cache_dir: CacheDirOpt = None,
    name: Annotated[str | None, typer.Option(help="remove only this entry")] = None,
) -> None:
    """Delete cache entries (all, or the one named)."""
    from accelkit.data.cache import clear_cache

    removed = clear_cache(cache_dir, name=name)
    typer.echo(f"removed {len(removed)} cache entr{'y' if len(removed) == 1 else 'ies'}")


def tune_loader_cmd(
    workload: WorkloadOpt = "images",
    cached: Annotated[
        bool, typer.Option(help="tune the cached dataset (building the cache if needed)")
    ] = True,
    batch_size: Annotated[int, typer.Option(help="batch size of the trials")] = 64,
    search: Annotated[str, typer.Option(help="auto | grid | coordinate")] = "auto",
    workers: Annotated[
        str | None, typer.Option(help="comma-separated num_workers to try, e.g. 0,1,2")
    ] = None,
    batches_per_trial: Annotated[int, typer.Option(help="batches timed per trial pass")] = 6,
    retune: Annotated[bool, typer.Option(help="ignore a cached tuner result")] = False,
    cache_dir: CacheDirOpt = None,
    image_size: ImageSizeOpt = 128,
    limit: LimitOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Measure DataLoader settings on this machine; print the best kwargs and the table."""
    from accelkit.data.cache import CacheConfig, CachedDataset
    from accelkit.data.tune_loader import LoaderTuneConfig, tune_loader

    ds = _image_dataset(workload, image_size, limit)
    if cached:
        ds = CachedDataset(
            ds, CacheConfig(cache_dir=str(cache_dir) if cache_dir else None), progress=True
        )
    kwargs: dict[str, Any] = {
        "batch_size": batch_size,
        "search": search,
        "batches_per_trial": batches_per_trial,
    }
    if workers:
        from accelkit.errors import ConfigError

        try:
            kwargs["num_workers"] = tuple(int(w) for w in workers.split(","))
        except ValueError as exc:
            raise ConfigError(
                f"--workers {workers!r}: expected comma-separated integers, e.g. 0,1,2"
            ) from exc
    result = tune_loader(ds, LoaderTuneConfig(**kwargs), use_cache=not retune, progress=True)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    table = Table(box=box.SIMPLE_HEAD)
    for col in ("workers", "pin memory", "persistent", "prefetch", "images/s", "start-up s", "phase"):
        table.add_column(col, overflow="fold", justify="left" if col == "phase" else "right")
    for r in sorted(result.table, key=lambda r: -r["images_per_s"]):
        table.add_row(
            str(r["num_workers"]),
            str(r["pin_memory"]),
            str(r["persistent_workers"]),
            str(r["prefetch_factor"]),
            f"{r['images_per_s']:.0f}",
            f"{r['startup_s']:.3f}",
            Text(str(r["phase"])),
        )
    console = Console()
    console.print(table)
    origin = (
        "cached result"
        if result.from_cache
        else f"{result.trials} trials, {result.elapsed_s:.1f} s, {result.search} search"
    )
    console.print(
        f"best: DataLoader(..., batch_size={batch_size}, **{result.best_kwargs})  ({origin})",
        markup=False, highlight=False,
    )
    for note in result.notes:
        console.print(f"note: {note}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")
    app.command("tune-loader")(tune_loader_cmd)
