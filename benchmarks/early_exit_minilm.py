"""Early exit, routed depth and static layer skipping on MiniLM: layer evaluations saved at mean cosine ≥ 0.98.

Run: HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/early_exit_minilm.py [--variants routed-depth]
Target (issue 7): ≥ 25% of layer evaluations saved at mean embedding cosine ≥ 0.98 on the
512 held-out sentences, with the measured wall-clock ratio beside it. Heads, thresholds and
the skipped layers are chosen on the calibration sentences only (cached after the first run).
``routed-depth`` distils three students the first time (about 30 min each on one thread), then caches them.
"""

from __future__ import annotations

import argparse
import sys

from accelkit.bench import bench


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--variants", default="early-exit,layer-skip,routed-depth")
    args = parser.parse_args()
    results = bench(
        "minilm", args.variants.split(","), batch_size=args.batch_size, repeats=args.repeats, roofline=False,
        progress=lambda msg: print(msg, file=sys.stderr, flush=True),
    )
    cpu = results.machine.get("cpu") or {}
    print(f"minilm, batch {args.batch_size}, fixed padding, {args.repeats} interleaved rounds, "
          f"machine: {cpu.get('model', '?')}, {cpu.get('logical_cores', '?')} cores")
    for v in results.variants[1:]:
        if v.error:
            print(f"{v.name}: failed: {v.error}")
            continue
        d = v.details
        saved = d.get("layers_saved_measured", d.get("layers_saved"))
        print(f"{v.name:12s} cosine mean {v.quality['cosine_mean']:.4f}  min {v.quality['cosine_min']:.4f}  "
              f"top10 {v.quality['top10_agreement']:.3f}  layer evaluations saved {saved:.1%}  "
              f"speed-up {v.speedup:.2f}x  pair ratios {v.pair_ratios}")
        if v.name == "early-exit":
            print("  thresholds", d["thresholds"])
            print("  exit histogram", [h["rows"] for h in d["exit_histogram"]])
            print("  trade-off curve (shared threshold, calibration data):")
            for point in d["tradeoff_curve"][:: max(1, len(d["tradeoff_curve"]) // 10)]:
                print(f"    thr {point['threshold']:.6f}  layers saved {point['layers_saved']:6.1%}  "
                      f"cosine {point['quality']:.4f}")
        elif v.name == "routed-depth":
            c = d["calibration"]
            print("  routes on eval", [(h["path"], h["rows"]) for h in d["route_histogram"]], " thresholds", d["thresholds"])
            print(f"  router fitted on {d['router_items']} unseen sentences; calibration ({d['calib_items']} "
                  f"held-out sentences): cosine {c['quality']:.4f}, "
                  f"layers saved {c['layers_saved']:.1%}; shallow paths' mean cosine "
                  f"{[round(q, 4) for q in c['path_quality']]}, router rank correlation "
                  f"{[round(r, 2) for r in c['router_spearman']]}")
            print("  trade-off curve (calibration data):")
            for point in d["tradeoff_curve"][:: max(1, len(d["tradeoff_curve"]) // 12)]:
                print(f"    layers saved {point['layers_saved']:6.1%}  cosine {point['quality']:.4f}")
        else:
            print("  skipped layers", d["skipped_layers"], " sensitivity (cosine without each layer):",
                  [round(s["quality_without"], 4) for s in d.get("sensitivity", [])])


if __name__ == "__main__":
    main()
