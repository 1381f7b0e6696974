"""Experiment (issue 27): accelkit's ``openvino-int8`` against sentence-transformers' OpenVINO
backends alone (no torch or ONNX Runtime rows whose threads share the cores), through the same
``measure_peers`` as ``bench --peers``: 512 held-out pydoc sentences, batch 32, 2 threads,
interleaved rounds with the order rotating, each row encoding from raw sentences.

    HF_HUB_OFFLINE=1 ACCELKIT_THREADS=2 .venv-peers/bin/python benchmarks/explore/minilm_vs_st_openvino.py [--rounds 7] [--batch 32] [--variant openvino-int8,openvino-int8+static-shapes]
"""

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402

from accelkit.peers import check_peer_workload, measure_peers  # noqa: E402
from accelkit.variants import build_variant  # noqa: E402
from accelkit.workloads import get_workload  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--variant", default="openvino-int8", help="accelkit's rows, comma-separated")
    parser.add_argument("--batch", type=int, default=32, help="every row's batch size")
    args = parser.parse_args()
    torch.set_num_threads(2)
    wl = get_workload("minilm")
    rows = {}
    for variant in args.variant.split(","):
        built = build_variant(variant, wl.build_model(), wl.default_settings(args.batch), wl)

        def encode(sentences, batch_size=None, built=built):
            at = built.settings if batch_size is None else built.settings.with_(batch_size=batch_size)
            return wl.predict(built.model, list(sentences), at).float().cpu().numpy()

        rows[f"accelkit {variant}"] = (variant, encode)

    table = measure_peers(check_peer_workload(wl), wl.eval_data(), wl.calib_data(300), accelkit=rows,
                          peers=["st-fp32", "st-openvino", "st-openvino-int8"], batch_size=args.batch, repeats=args.rounds)
    for row in table["rows"]:
        extra = f"  {row['vs_best_peer']:.2f}x the fastest peer" if "vs_best_peer" in row else ""
        print(f"{row['name']:38s} {row.get('sentences_per_s', 0):7.1f}/s  {row.get('ratio', 0):5.2f}x st-fp32  "
              f"cos {row.get('cosine_mean', 0):.4f} / {row.get('cosine_min', 0):.4f}{extra}{row.get('error', '')}")


if __name__ == "__main__":
    main()
