"""Foundation figures: the fixed-length reference and bf16 on minilm against the default baseline
(sentence-transformers' length-sorted dynamic padding, fp32).

    .venv/bin/python benchmarks/foundation_minilm.py [--limit 512] [--repeats 5]

Prints the side-by-side table (median of interleaved per-round ratios) and writes
out/bench/foundation_minilm.json.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from accelkit.bench import bench  # noqa: E402
from accelkit.report.results import save_results  # noqa: E402
from accelkit.report.table import print_table  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    res = bench("minilm", ["fixed-length", "bf16", "bf16-cast"], batch_size=args.batch_size,
                limit=args.limit, repeats=args.repeats, max_quality_drop=0.01)
    print_table(res)
    for v in res.variants:
        print(f"{v.name:24s} speedup {v.speedup:5.2f}x  {v.throughput:8.1f} sentences/s  "
              f"cosine_mean {v.quality['cosine_mean']:.5f}  cosine_min {v.quality['cosine_min']:.5f}  "
              f"top10 {v.quality['top10_agreement']:.3f}  roofline {100 * (v.roofline_fraction or 0):.1f}%")
    save_results(res, "out/bench/foundation_minilm.json")


if __name__ == "__main__":
    main()
