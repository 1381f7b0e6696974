"""Structured vs unstructured pruning on the digits CNN: speed-up beside the baseline, accuracy drop.

Run: .venv/bin/python benchmarks/compress_prune.py [--repeats 7] [--threads N]
Prints one line per (batch size, variant): interleaved median speed-up, accuracy, params.
"""

from __future__ import annotations

import argparse

import torch

from accelkit.bench import bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}")
    variants = ["prune-structured-50", "prune-unstructured-50"]
    for batch_size, limit in ((256, None), (1, 200)):
        res = bench("digits", variants, batch_size=batch_size, repeats=args.repeats, limit=limit, roofline=False)
        for v in res.variants:
            if v.error:
                print(f"batch {batch_size:>3}  {v.name:<24} ERROR {v.error}")
                continue
            print(
                f"batch {batch_size:>3}  {v.name:<24} speedup {v.speedup:5.2f}x  "
                f"latency p50 {v.latency_ms['p50']:.3f} ms/batch  accuracy {v.quality['accuracy']:.4f}  "
                f"drop {v.quality_drop * 100:+.2f} pt  params {v.params}  flops/item {v.flops_per_item}"
            )


if __name__ == "__main__":
    main()
