"""Digits CNN inference side by side at batch 1 and batch 256: static int8 (PT2E, ONNX Runtime) vs fp32.

Run: HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/infer_digits.py [--repeats 5]
Target (issue 3): >= 1.5x latency at batch 1 and batch 256, <= 0.5 points accuracy drop.
Calibration uses the training split (calib_data), never the 450 test images.
"""

from __future__ import annotations

import argparse

from accelkit.bench import bench

VARIANTS = ["int8-static", "compile", "onnx", "onnx-int8-static", "int8-aware", "int8-dynamic", "bf16-cast"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-sizes", default="1,256")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        results = bench("digits", args.variants.split(","), batch_size=batch, repeats=args.repeats,
                        max_quality_drop=0.005, progress=lambda m: print("..", m, flush=True))
        cpu = results.machine.get("cpu") or {}
        print(f"\ndigits, 450 test images, batch {batch}, {args.repeats} interleaved rounds, "
              f"machine: {cpu.get('model', '?')}, {cpu.get('logical_cores', '?')} cores")
        print(f"{'variant':20s} {'speed-up':>8s} {'p50 ms/batch':>12s} {'accuracy':>8s} {'drop':>7s} "
              f"{'budget':>6s} {'roofline':>8s}")
        for v in results.variants:
            if v.error:
                print(f"{v.name:20s} failed: {v.error}")
                continue
            roof = f"{v.roofline_fraction:.2%}" if v.roofline_fraction else "n/a"
            ok = "ok" if v.meets_budget else "FAIL"
            extra = {k: v.details[k] for k in ("compile_s", "quantized_ops", "quantize_nodes") if k in v.details}
            print(f"{v.name:20s} {v.speedup:7.2f}x {v.latency_ms['p50']:12.3f} {v.quality['accuracy']:8.4f} "
                  f"{v.quality_drop:7.4f} {ok:>6s} {roof:>8s}  {extra}")


if __name__ == "__main__":
    main()
