"""Batch-size finder vs an exhaustive sweep on CPU: how close is the finder's choice to the best?

Runs ``find_max_batch_size`` as shipped (early stop past the throughput peak), then a sweep
of every power of two up to the cap (no early stop), and reads the finder's chosen size off
the sweep's curve: ratio = sweep samples/s at the chosen size / best samples/s of the sweep.

    .venv/bin/python benchmarks/train_batch_finder.py --workload digits --max-batch 2048
"""

from __future__ import annotations

import argparse
import time

from accelkit.train.batch_finder import find_max_batch_size
from accelkit.train.tasks import get_training_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="digits", choices=["digits", "gpt-mini"])
    parser.add_argument("--max-batch", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per probe")
    args = parser.parse_args()
    task = get_training_task(args.workload)
    common = dict(device="cpu", max_batch_size=args.max_batch, steps=args.steps)
    start = time.perf_counter()
    found = find_max_batch_size(task.model, *task.example_batch, task.loss_fn, **common)
    finder_s = time.perf_counter() - start
    start = time.perf_counter()
    sweep = find_max_batch_size(task.model, *task.example_batch, task.loss_fn, patience=10**6, tolerance=0.0, **common)
    sweep_s = time.perf_counter() - start
    curve = {p.batch_size: p.samples_per_s for p in sweep.curve if p.fits}
    best_size = max(curve, key=curve.get)
    print(f"# {args.workload}, cap {args.max_batch}, {args.steps} steps/probe, budget {found.memory_budget_mb:,.0f} MB")
    print("finder curve: " + ", ".join(f"{p.batch_size}:{p.samples_per_s:,.0f}" for p in found.curve if p.fits))
    print("sweep  curve: " + ", ".join(f"{b}:{r:,.0f}" for b, r in curve.items()))
    print(f"finder chose {found.batch_size} in {finder_s:.0f} s ({len(found.curve)} probes); sweep best {best_size} "
          f"in {sweep_s:.0f} s ({len(sweep.curve)} probes); finder's choice reaches "
          f"{curve.get(found.batch_size, float('nan')) / curve[best_size]:.1%} of the sweep's best samples/s")


if __name__ == "__main__":
    main()
