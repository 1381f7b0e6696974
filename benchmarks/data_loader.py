"""Image workload loader variants side by side: naive vs cached / tuned / cached+tuned.

    .venv/bin/python benchmarks/data_loader.py [--repeats 3] [--limit N] [--variants naive,cached+tuned]

Each epoch runs a small CNN training step per batch; epochs of every variant are
interleaved with the naive loader (num_workers=0, Pillow decode + augment every
read) and the speed-up is the median of per-pair epoch-time ratios.
"""

from __future__ import annotations

import argparse
import os
import platform

from accelkit.data.bench import DATA_VARIANTS, bench_data_variants

__all__ = ["bench_data_variants", "main"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(DATA_VARIANTS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads of the consumer process"
    )
    parser.add_argument("--retune", action="store_true", help="ignore a cached tuner result")
    args = parser.parse_args()
    rows = bench_data_variants(
        [v.strip() for v in args.variants.split(",") if v.strip()],
        repeats=args.repeats,
        batch_size=args.batch_size,
        limit=args.limit,
        retune=args.retune,
        threads=args.threads,
        progress=lambda msg: print(f"... {msg}", flush=True),
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"{rows[0]['images']} images/epoch, batch {args.batch_size}, {args.repeats} interleaved rounds, "
        f"{args.threads} torch thread(s) in the consumer"
    )
    print(
        f"{'variant':<18}{'images/s':>10}{'epoch s':>9}{'speedup':>9}{'wait':>7}{'setup s':>9}  loader kwargs / pair ratios"
    )
    for r in rows:
        ratios = ", ".join(f"{x:.2f}" for x in r["pair_ratios"])
        print(
            f"{r['name']:<18}{r['throughput']:>10.0f}{r['epoch_s']:>9.2f}{r['speedup']:>8.2f}x"
            f"{r['wait_fraction']:>7.0%}{r['setup_s']:>9.1f}  {r['loader_kwargs']} [{ratios}]"
        )


if __name__ == "__main__":
    main()
