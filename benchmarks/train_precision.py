"""Training step throughput: fp32 eager vs bf16 autocast vs bf16 + torch.compile + fused AdamW.

Every variant trains its own copy of the same initial model on the same batches; calls of a
few steps are timed interleaved (A B C A B C ...); the speed-up is the median of per-round
ratios to fp32, with the validation loss after the same number of steps beside it. MFU is
model FLOP/s over this machine's measured GEMM peak (fp32 peak, and the variant's own dtype).

    .venv/bin/python benchmarks/train_precision.py --workload gpt-mini --repeats 10
    .venv/bin/python benchmarks/train_precision.py --workload gpt-mini --size large --threads 1 --steps-per-call 2 --repeats 20
    .venv/bin/python benchmarks/train_precision.py --workload digits --repeats 10

--size large (n_embd 512, 8 heads, 6 layers, T 128, batch 8: accelkit.train.tasks.GPT_MINI_SIZES)
is the GEMM-bound shape where bf16 pays; the default gpt-mini is overhead-bound on CPU.
--threads 1 is steadier when other work shares the cores (ratios, not absolute rates, carry over).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from accelkit.train.bench import bench_train_variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="gpt-mini", choices=["gpt-mini", "digits"])
    parser.add_argument("--variants", default="fp32,bf16,bf16+compile+fused", help="see accelkit.train.bench.TRAIN_VARIANTS")
    parser.add_argument("--size", default="default", choices=["default", "large"], help="gpt-mini shape (GPT_MINI_SIZES)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's own)")
    parser.add_argument("--batch", type=int, default=None,
                        help="default: 16 windows of 128 bytes (gpt-mini), 8 (gpt-mini --size large), 256 images (digits)")
    parser.add_argument("--steps-per-call", type=int, default=2, help="training steps per timed call")
    parser.add_argument("--repeats", type=int, default=10, help="interleaved rounds")
    parser.add_argument("--out", default=None, help="also save accelkit.results/1 JSON here")
    args = parser.parse_args()
    start = time.perf_counter()
    results = bench_train_variants(args.workload, [v.strip() for v in args.variants.split(",")], batch_size=args.batch,
                                   steps_per_call=args.steps_per_call, repeats=args.repeats,
                                   size=args.size, threads=args.threads, progress=lambda m: print(f"# {m}", file=sys.stderr))
    s, roof = results.settings, results.roofline
    unit = results.variants[0].throughput_unit
    shape = s.get("model_config") or {}
    shape_txt = f" (n_embd {shape['n_embd']}, {shape['n_layer']} layers, T {shape['block_size']})" if shape else ""
    print(f"# {args.workload} size {s['size']}{shape_txt}: batch {s['batch_size']}, {s['items_per_step']} {unit[:-2]}/step, "
          f"{(s['flops_per_step'] or 0) / 1e9:.2f} GFLOP/step (fwd+bwd), {args.steps_per_call} steps/call, "
          f"{args.repeats} interleaved rounds, torch {torch.__version__}, {s['threads']} threads, load average "
          f"{s['load_average_1min']:.1f}; measured GEMM peak "
          f"fp32 {roof['fp32_gflops']:.0f} / bf16 {roof['bf16_gflops'] or 0:.0f} GFLOP/s")
    print(f"{'variant':<20} {unit:>12} {'speed-up':>9} {'val_loss':>9} {'Δval_loss':>10} {'MFU fp32-peak':>14} {'MFU own-peak':>13}")
    for v in results.variants:
        mfu32, mfu_own = v.details.get("mfu_vs_fp32_peak"), v.roofline_fraction
        print(f"{v.name:<20} {v.throughput:>12,.0f} {v.speedup:>8.2f}x {v.quality['val_loss']:>9.4f} "
              f"{v.quality_drop / results.variants[0].quality['val_loss']:>+9.2%} "
              f"{mfu32 if mfu32 is None else f'{mfu32:.1%}':>14} {mfu_own if mfu_own is None else f'{mfu_own:.1%}':>13}")
    steps = {v.details["steps_trained"] for v in results.variants}
    print(f"# every variant trained {sorted(steps)} steps from the same init on the same batches; wall {time.perf_counter() - start:.0f} s")
    if args.out:
        from accelkit.report.results import save_results

        save_results(results, args.out)


if __name__ == "__main__":
    main()
