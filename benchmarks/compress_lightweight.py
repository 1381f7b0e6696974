"""Lightweight digits models beside the standard CNN: parameters, FLOPs, measured speed, accuracy.

Run: .venv/bin/python benchmarks/compress_lightweight.py [--repeats 5] [--threads N]
FLOP ratios are not speed-ups: depthwise convs run far below peak on CPUs, so the
measured (interleaved) speed-up is printed beside them.
"""

from __future__ import annotations

import argparse
import copy

import torch

from accelkit.bench import bench
from accelkit.techniques.lightweight import (
    MobileDigitsNet,
    compare_architectures,
    efficient_family,
    to_depthwise_separable,
)
from accelkit.workloads.digits import DigitsCNN


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}")
    x = torch.rand(8, 1, 8, 8)
    models = {
        "DigitsCNN(64) (baseline)": DigitsCNN(64),
        "to_depthwise_separable": to_depthwise_separable(copy.deepcopy(DigitsCNN(64)))[0],
        "MobileDigitsNet w2 (mobilenet-v2)": MobileDigitsNet(2.0),
        "DigitsCNN(16) (distill-small)": DigitsCNN(16),
        **{f"MobileDigitsNet {k}": m for k, m in efficient_family((0, 1, 2), se=True).items()},
    }
    for name, row in compare_architectures(models, x).items():
        print(f"{name:<32} params {row['params']:>8}  FLOPs/image {row['flops_per_item'] / 1e6:6.2f} M  "
              f"params {row['params_ratio']:.3f}x  FLOPs {row['flops_ratio']:.3f}x")
    for batch_size, limit in ((256, None), (1, 200)):
        res = bench("digits", ["depthwise-separable", "mobilenet-v2", "distill-small"],
                    batch_size=batch_size, repeats=args.repeats, limit=limit, roofline=False)
        for v in res.variants:
            if v.error:
                print(f"batch {batch_size:>3} {v.name:<20} ERROR {v.error}")
                continue
            print(f"batch {batch_size:>3} {v.name:<20} speedup {v.speedup:5.2f}x  accuracy {v.quality['accuracy']:.4f}  "
                  f"drop {v.quality_drop * 100:+.2f} pt  flops/item {v.flops_per_item}")


if __name__ == "__main__":
    main()
