"""Attention-head pruning beside its teacher: minilm with 50% of the heads removed, recovered by distillation.

Run: .venv/bin/python benchmarks/compress_heads.py [--repeats 5] [--limit 512] [--threads N]
The first run scores the heads, prunes and distils the student (minutes) and caches it; later runs load it.
Prints the interleaved median speed-up (same padding as the teacher), quality, heads kept per layer
and parameter counts.
"""

from __future__ import annotations

import argparse

import torch

from accelkit.bench import bench


def _print(res) -> None:
    for v in res.variants:
        if v.error:
            print(f"{res.workload:<7} {v.name:<16} ERROR {v.error}")
            continue
        q = " ".join(f"{k} {val:.4f}" for k, val in v.quality.items())
        extra = {k: v.details[k] for k in ("heads_kept", "params_before", "params_after", "cached") if k in v.details}
        print(
            f"{res.workload:<7} {v.name:<16} speedup {v.speedup:5.2f}x  throughput {v.throughput:8.1f} "
            f"{v.throughput_unit}  {q}  params {v.params}  {extra}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--limit", type=int, default=512, help="minilm evaluation sentences (512 = all)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}")
    _print(bench("minilm", ["prune-heads-50"], batch_size=32, repeats=args.repeats, limit=args.limit, roofline=False))


if __name__ == "__main__":
    main()
