"""MiniLM inference side by side: precision, int8 (PyTorch, ONNX Runtime, accuracy-aware), vs fp32.

Run: HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/infer_minilm.py [--limit 256] [--repeats 5]
Speed-ups are against ``default``: what SentenceTransformer.encode does (length-sorted batches
padded per batch, fp32, max_seq_length 256); ``fixed-length`` is accelkit's earlier baseline
(every batch padded to 128 tokens), measured as a reference row.
Calibration (SmoothQuant ranges, sensitivity, fallback checks) uses calibration sentences only.
"""

from __future__ import annotations

import argparse

from accelkit.bench import bench

VARIANTS = [
    "fixed-length",
    "bf16",
    "bf16-cast",
    "int8-dynamic",
    "onnx",
    "onnx-int8-dynamic",
    "int8-aware",
    "int8-aware-torch",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    results = bench("minilm", args.variants.split(","), batch_size=args.batch_size, repeats=args.repeats,
                    limit=args.limit, max_quality_drop=0.01, progress=lambda m: print("..", m, flush=True))
    cpu = results.machine.get("cpu") or {}
    print(f"\nminilm, {args.limit} eval sentences, batch {args.batch_size}, {args.repeats} interleaved rounds, "
          f"machine: {cpu.get('model', '?')}, {cpu.get('logical_cores', '?')} cores")
    print(f"{'variant':36s} {'speed-up':>8s} {'sent/s':>8s} {'cos mean':>8s} {'cos min':>8s} {'top10':>6s} "
          f"{'size MB':>8s} {'roofline':>8s}")
    for v in results.variants:
        if v.error:
            print(f"{v.name:36s} failed: {v.error}")
            continue
        q = v.quality
        roof = f"{v.roofline_fraction:.1%}" if v.roofline_fraction else "n/a"
        print(f"{v.name:36s} {v.speedup:7.2f}x {v.throughput:8.1f} {q['cosine_mean']:8.4f} {q['cosine_min']:8.4f} "
              f"{q['top10_agreement']:6.3f} {v.size_mb or 0:8.1f} {roof:>8s}  ({v.compute_dtype})")
    for v in results.variants:
        d = v.details or {}
        if "kept_layers" in d:
            print(f"\n{v.name}: {d['quantized_layers']} Linears int8, kept in fp32: "
                  f"{[k['layer'] for k in d['kept_layers']] or 'none'}; calibration drop {d['calib_quality_drop']} "
                  f"(budget {d['budget']}); SmoothQuant {d.get('smoothquant', {}).get('alpha')}; build {v.build_s:.0f} s")
            for k in d["kept_layers"]:
                print(f"   {k['layer']}: {k['why']}")


if __name__ == "__main__":
    main()
