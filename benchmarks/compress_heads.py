"""Attention-head pruning beside its teacher: minilm with 50% of the heads removed, recovered by distillation.

Run: .venv/bin/python benchmarks/compress_heads.py [--repeats 5] [--limit 512] [--threads N]
The first run scores the heads, prunes and distils the student (minutes) and caches it; later runs load it.
Prints the interleaved median speed-up (same padding as the teacher), quality, heads kept per layer
and parameter counts.
"""

from __future__ import annotations

import argparse

import torch
from compress_distill import print_variants  # benchmarks/ is on sys.path when run as a script

from accelkit.bench import bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--limit", type=int, default=512, help="minilm evaluation sentences (512 = all)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}")
    res = bench("minilm", ["prune-heads-50"], batch_size=32, repeats=args.repeats, limit=args.limit, roofline=False)
    print_variants(res, ("heads_kept", "params_before", "params_after", "cached"))


if __name__ == "__main__":
    main()
