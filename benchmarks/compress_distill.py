"""Distilled students beside their teachers: minilm 3-of-6 layers, digits width-16 CNN.

Run: .venv/bin/python benchmarks/compress_distill.py [--repeats 5] [--limit 256] [--threads N]
The first run trains and caches the students (minutes); later runs load them.
Prints interleaved median speed-up (same padding as the teacher), quality and kept layers.
"""

from __future__ import annotations

import argparse

import torch

from accelkit.bench import bench


def print_variants(res, detail_keys: tuple[str, ...] = ("kept_layers", "flops_ratio")) -> None:
    """One line per variant: speed-up, throughput, quality, params and the named details."""
    for v in res.variants:
        if v.error:
            print(f"{res.workload:<7} {v.name:<16} ERROR {v.error}")
            continue
        q = " ".join(f"{k} {val:.4f}" for k, val in v.quality.items())
        extra = {k: v.details[k] for k in detail_keys if k in v.details}
        print(
            f"{res.workload:<7} {v.name:<16} speedup {v.speedup:5.2f}x  throughput {v.throughput:8.1f} "
            f"{v.throughput_unit}  {q}  params {v.params}  {extra}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--limit", type=int, default=256, help="minilm evaluation sentences")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}")
    print_variants(bench("minilm", ["distill-3layer"], batch_size=32, repeats=args.repeats, limit=args.limit, roofline=False))
    print_variants(bench("digits", ["distill-small"], batch_size=256, repeats=args.repeats, roofline=False))


if __name__ == "__main__":
    main()
