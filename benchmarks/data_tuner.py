"""DataLoader tuner vs exhaustive grid on the cached image workload.

    .venv/bin/python benchmarks/data_tuner.py [--repeats 5] [--limit N]

Runs the full grid and the coordinate search over the same space, then times
full epochs of the grid's best and the tuner's choice interleaved (A B A B) and
prints the tuner's choice as a fraction of the grid best, and the time each search took.
"""

from __future__ import annotations

import argparse
import warnings

import torch

from accelkit.data.bench import make_consumer
from accelkit.data.cache import CachedDataset
from accelkit.data.images import images_workload
from accelkit.data.tune_loader import LoaderTuneConfig, tune_loader
from accelkit.measure import compare_interleaved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)  # same setting as benchmarks/data_loader.py
    warnings.filterwarnings(
        "ignore", message=".*worker processes in total.*"
    )  # 3 workers on 2 cores is tried on purpose
    raw = images_workload()
    if args.limit:
        raw.samples = raw.samples[: args.limit]
    ds = CachedDataset(raw)
    consume = make_consumer()
    space = dict(
        batch_size=args.batch_size,
        num_workers=(0, 1, 2, 3),
        persistent_workers=(False, True),
        prefetch_factor=(2, 4, 8),
        batches_per_trial=6,
    )
    grid = tune_loader(
        ds, LoaderTuneConfig(**space, search="grid", max_grid=100), consume=consume, use_cache=False
    )
    coord = tune_loader(
        ds, LoaderTuneConfig(**space, search="coordinate"), consume=consume, use_cache=False
    )
    print(f"grid:       {grid.trials} trials, {grid.elapsed_s:.1f} s → {grid.best_kwargs}")
    print(f"coordinate: {coord.trials} trials, {coord.elapsed_s:.1f} s → {coord.best_kwargs}")
    print(f"search time: coordinate / grid = {coord.elapsed_s / grid.elapsed_s:.2f}")

    def epoch_fn(kwargs):
        loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=True, **kwargs)

        def run():
            for batch in loader:
                consume(batch)

        return run

    # Short trials are noisy: time full epochs of the grid's top 3 and the tuner's choice, interleaved.
    candidates = {}
    for row in sorted(grid.table, key=lambda r: -r["images_per_s"]):
        kw = {
            k: row[k]
            for k in ("num_workers", "pin_memory", "persistent_workers", "prefetch_factor")
        }
        if kw["num_workers"] == 0:
            kw = {"num_workers": 0, "pin_memory": kw["pin_memory"]}
        if kw not in candidates.values() and len(candidates) < 3:
            candidates[f"grid#{len(candidates) + 1}"] = kw
    fns = {"tuner": epoch_fn(coord.best_kwargs)}
    for name, kw in candidates.items():
        if kw != coord.best_kwargs:
            fns[name] = epoch_fn(kw)
    timings = compare_interleaved(fns, baseline="tuner", repeats=args.repeats, warmup=1)
    print(
        f"full epochs, {args.repeats} interleaved rounds (images/s relative to the tuner's choice):"
    )
    for name, t in timings.items():
        kw = coord.best_kwargs if name == "tuner" else candidates[name]
        print(f"  {name:<8} {1 / t.speedup if t.speedup else float('nan'):6.3f}x  {kw}")
    best_other = max((1 / t.speedup for n, t in timings.items() if n != "tuner"), default=1.0)
    print(
        f"tuner choice / best full-epoch grid candidate = {1 / max(best_other, 1.0) if best_other > 1 else 1.0:.3f}"
        f" (1.0 = tuner as fast as or faster than every candidate)"
    )


if __name__ == "__main__":
    main()
