"""Early exit on the digits CNN at batch 256: compute saved, measured speed-up, accuracy drop.

Run: HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/early_exit_digits.py
Targets (issue 7): ≥ 35% average compute saved, ≥ 1.4× throughput, ≤ 0.005 accuracy drop.
The first run trains the exit heads (cached under ~/.cache/accelkit/early_exit).
"""

from __future__ import annotations

import argparse
import sys

from accelkit.bench import bench


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    results = bench("digits", ["early-exit"], batch_size=args.batch_size, repeats=args.repeats, roofline=False,
                    progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    base, ee = results.variants[0], results.variants[1]
    if ee.error:
        raise SystemExit(f"early-exit failed: {ee.error}")
    d = ee.details
    cpu = results.machine.get("cpu") or {}
    print(f"digits, batch {args.batch_size}, {args.repeats} interleaved rounds, machine: {cpu.get('model', '?')}, {cpu.get('logical_cores', '?')} cores")
    print(f"baseline accuracy      {base.quality['accuracy']:.4f}")
    print(f"early-exit accuracy    {ee.quality['accuracy']:.4f}  (drop {ee.quality_drop:+.4f})")
    print(f"compute saved (FLOPs)  {d['compute_saved_measured']:.1%} on eval; "
          f"{d['calibration']['compute_saved']:.1%} on calibration")
    print(f"blocks saved           {d['layers_saved_measured']:.1%}")
    print(f"speed-up (median)      {ee.speedup:.2f}x   pair ratios {ee.pair_ratios}")
    print(f"throughput             {base.throughput:.0f} -> {ee.throughput:.0f} {ee.throughput_unit}")
    print(f"thresholds             {d['thresholds']}")
    print("exit histogram         " + ", ".join(f"{h['name']}: {h['rows']}" for h in d["exit_histogram"]))
    print("trade-off curve (shared threshold, calibration data):")
    for point in d["tradeoff_curve"][:: max(1, len(d["tradeoff_curve"]) // 10)]:
        print(f"  thr {point['threshold']:.6f}  compute saved {point['compute_saved']:6.1%}  "
              f"agreement {point['quality']:.4f}")


if __name__ == "__main__":
    main()
