"""Experiment (issue 24): how fast this CPU's fp32 kernels run the linear layers of
generate_llama.py's trained Llama (384 wide, 1,024 feed-forward, grouped keys and values of 192,
4,096-token head) at 64, 128 and 256 rows: torch's own ``F.linear``, 2 threads, random data.

    .venv/bin/python benchmarks/explore/fp32_linear_rows.py [--rows 64,128,256]

Prints microseconds a call and GFLOP/s for each shape; the figure to hold OpenVINO's
FullyConnected rate (ov_generate_profile.py) against.
"""

import argparse
import time

import torch

# (in, out) of the layers: q and o, k and v, gate and up, down, the head; two fused widths beside
SHAPES = [(384, 384), (384, 192), (384, 1024), (1024, 384), (384, 4096), (384, 768), (384, 2048)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default="64,128,256")
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(2)
    for rows in (int(r) for r in args.rows.split(",")):
        for k, n in SHAPES:
            x, w = torch.randn(rows, k), torch.randn(n, k)
            for _ in range(20):
                torch.nn.functional.linear(x, w)
            start = time.perf_counter()
            for _ in range(args.calls):
                torch.nn.functional.linear(x, w)
            spent = (time.perf_counter() - start) / args.calls
            print(f"rows {rows:4d}  {k:5d} -> {n:5d}: {spent * 1e6:8.1f} us  {2 * rows * k * n / spent / 1e9:6.1f} GFLOP/s")


if __name__ == "__main__":
    main()
