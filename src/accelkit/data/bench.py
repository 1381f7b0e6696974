"""Loader variants of the image workload timed side by side (naive, cached, tuned, cached+tuned).

It buys an honest epoch-time ratio for the data techniques (interleaved epochs,
median of per-pair ratios, same consumer step); it costs a cache build and a
tuner pass before timing, reported separately.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from accelkit._threads import thread_count
from accelkit.data.cache import CacheConfig, CachedDataset
from accelkit.data.images import ImagePipelineConfig, images_workload
from accelkit.data.tune_loader import LoaderTuneConfig, tune_loader
from accelkit.errors import UnknownVariantError

__all__ = [
    "DATA_VARIANTS",
    "bench_data_task",
    "bench_data_variants",
    "data_results",
    "make_consumer",
]

DATA_VARIANTS = ("naive", "cached", "tuned", "cached+tuned")
_EXTRA_VARIANTS = ("precomputed+tuned",)


def make_consumer(channels: int = 3, classes: int = 10, seed: int = 0) -> Callable[[Any], None]:
    """A small CNN training step (forward, backward, SGD) standing in for the model's work.

    Deliberately light (one strided conv): the benchmark is about the input
    pipeline, and a heavy step would hide the loader behind compute.
    """
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(channels, 8, 5, stride=4, padding=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(32, classes),
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def step(batch: Any) -> None:
        x, y = batch
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _epoch_runner(
    loader: torch.utils.data.DataLoader,
    dataset: Any,
    consume: Callable[[Any], None],
    waits: list[float],
) -> Callable[[], int]:
    state = {"epoch": 0}

    def run_epoch() -> int:
        dataset.set_epoch(state["epoch"])
        state["epoch"] += 1
        wait = 0.0
        seen = 0
        start = time.perf_counter()
        it = iter(loader)
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                wait += time.perf_counter() - t0
                break
            wait += time.perf_counter() - t0
            consume(batch)
            seen += len(batch[1])
        total = time.perf_counter() - start
        waits.append(wait / total if total > 0 else 0.0)
        return seen

    return run_epoch


def bench_data_variants(
    variants: list[str] | None = None,
    *,
    repeats: int = 3,
    warmup: int = 1,
    batch_size: int = 64,
    limit: int | None = None,
    image_size: int = 128,
    cache_dir: str | Path | None = None,
    tune_config: LoaderTuneConfig | None = None,
    retune: bool = False,
    threads: int | None = 1,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Time one epoch per variant, interleaved with the naive loader; one dict per variant.

    Keys: name, throughput (images/s from the median epoch), epoch_s (median),
    speedup (median per-pair ratio vs naive), wait_fraction (median share of the
    epoch the consumer spent blocked on ``next(loader)``), loader_kwargs, setup_s
    (cache build / tuning, not in epoch time), images, throughput_unit.
    Variants: naive, cached, tuned, cached+tuned (and precomputed+tuned: 4
    precomputed augmentation epochs). "naive" is always measured as the baseline.
    threads: torch intra-op threads of this process for the run (restored after);
    1 by default because on a shared 2-core machine two spinning OpenMP threads
    make every small op several times slower for all variants alike.
    """
    names = list(DATA_VARIANTS) if not variants or variants == ["all"] else list(variants)
    for name in names:
        if name not in DATA_VARIANTS + _EXTRA_VARIANTS:
            raise UnknownVariantError(
                f"data variant {name!r}: expected one of {', '.join(DATA_VARIANTS + _EXTRA_VARIANTS)}"
            )
    if "naive" not in names:
        names.insert(0, "naive")
    say = progress or (lambda msg: None)
    with thread_count(threads):
        return _run(
            names,
            repeats,
            warmup,
            batch_size,
            limit,
            image_size,
            cache_dir,
            tune_config,
            retune,
            say,
        )


def _run(
    names: list[str],
    repeats: int,
    warmup: int,
    batch_size: int,
    limit: int | None,
    image_size: int,
    cache_dir: str | Path | None,
    tune_config: LoaderTuneConfig | None,
    retune: bool,
    say: Callable[[str], None],
) -> list[dict[str, Any]]:
    from accelkit.measure import compare_interleaved

    pipeline = ImagePipelineConfig()
    raw = images_workload(config=pipeline, image_size=image_size)
    if limit is not None:
        raw.samples = raw.samples[:limit]
    n_images = len(raw)
    tune_config = tune_config or LoaderTuneConfig(
        batch_size=batch_size, num_workers=(0, 1, 2), prefetch_factor=(2, 4), batches_per_trial=4
    )
    cache_cfg = CacheConfig(cache_dir=str(cache_dir) if cache_dir else None)
    consume = make_consumer(channels=pipeline.channels, classes=len(raw.classes))

    datasets: dict[str, Any] = {}
    kwargs: dict[str, dict[str, Any]] = {}
    setup_s: dict[str, float] = {}
    for name in names:
        t0 = time.perf_counter()
        if name.startswith("cached"):
            say("building the dataset cache")
            datasets[name] = CachedDataset(raw, cache_cfg)
        elif name.startswith("precomputed"):
            say("precomputing 4 augmented epochs")
            datasets[name] = CachedDataset(
                raw, CacheConfig(cache_dir=cache_cfg.cache_dir, precompute_epochs=4)
            )
        else:
            datasets[name] = raw
        if name.endswith("tuned"):
            say(f"tuning the DataLoader for {name}")
            tuned = tune_loader(
                datasets[name],
                tune_config,
                consume=consume,
                use_cache=not retune,
                context="bench-consumer-v2",
            )
            kwargs[name] = tuned.best_kwargs
        else:
            kwargs[name] = {"num_workers": 0}
        setup_s[name] = time.perf_counter() - t0

    waits: dict[str, list[float]] = {name: [] for name in names}
    loaders = {
        name: torch.utils.data.DataLoader(
            datasets[name],
            batch_size=batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(0),
            **kwargs[name],
        )
        for name in names
    }
    fns = {
        name: _epoch_runner(loaders[name], datasets[name], consume, waits[name]) for name in names
    }
    say("timing interleaved epochs")
    timings = compare_interleaved(fns, baseline="naive", repeats=repeats, warmup=warmup)
    rows = []
    for name in names:
        t = timings[name]
        epoch_s = statistics.median(t.times_s)
        rows.append(
            {
                "name": name,
                "throughput": n_images / epoch_s,
                "throughput_unit": "images/s",
                "epoch_s": epoch_s,
                "speedup": t.speedup,
                "pair_ratios": t.pair_ratios,
                "wait_fraction": statistics.median(waits[name][warmup:] or waits[name]),
                "loader_kwargs": kwargs[name],
                "setup_s": setup_s[name],
                "images": n_images,
            }
        )
    del loaders  # stop persistent workers before returning
    return rows


def data_results(rows: list[dict[str, Any]], *, repeats: int, batch_size: int) -> Any:
    """Rows of ``bench_data_variants`` as an ``accelkit.results/1`` Results record."""
    import datetime as _dt

    from accelkit.hardware import probe
    from accelkit.report.results import Results, VariantResult

    variants = [
        VariantResult(
            name=r["name"],
            speedup=r["speedup"],
            throughput=r["throughput"],
            throughput_unit="images/s",
            pass_ms={"p50": r["epoch_s"] * 1e3},
            build_s=r["setup_s"],
            pair_ratios=r["pair_ratios"],
            details={"wait_fraction": r["wait_fraction"], "loader_kwargs": r["loader_kwargs"]},
        )
        for r in rows
    ]
    return Results(
        workload="images",
        task="data",
        baseline="naive",
        variants=variants,
        machine=probe(),
        settings={"repeats": repeats, "batch_size": batch_size, "images": rows[0]["images"]},
        primary_metric="",
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    )


def bench_data_task(
    *,
    workload: str = "images",
    variants: str = "all",
    list_only: bool = False,
    out: Path | None = None,
    html: Path | None = None,
    repeats: int = 3,
    **_: Any,
) -> Any:
    """``accelkit bench --task data`` entry (the BenchTask signature): run, print, save."""
    from accelkit.errors import UnknownWorkloadError

    if workload != "images":
        raise UnknownWorkloadError(
            f"--workload {workload!r}: --task data measures the 'images' workload"
        )
    if list_only:
        print("\n".join(DATA_VARIANTS + _EXTRA_VARIANTS))
        return None
    names = (
        None if variants.strip() == "all" else [v.strip() for v in variants.split(",") if v.strip()]
    )
    rows = bench_data_variants(names, repeats=repeats)
    results = data_results(rows, repeats=repeats, batch_size=64)
    # results first: a failure while printing must not lose the run
    if out is not None:
        from accelkit.report.results import save_results

        save_results(results, out)
    if html is not None:
        from accelkit.report.html import write_html_report

        write_html_report(results, html)
    from accelkit.report.table import print_table

    print_table(results)
    for r in rows:
        print(
            f"{r['name']}: consumer waits on data {r['wait_fraction']:.0%} of the epoch; loader {r['loader_kwargs']}"
        )
    return results
