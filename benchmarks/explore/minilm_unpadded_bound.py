"""Experiment (issue 27, sequence packing / unpadding): the most that dropping minilm's pad tokens
could buy under OpenVINO int8. Builds the graph `openvino-int8` builds (one request, 2 threads)
and times, in interleaved rounds:
- the 512 held-out pydoc sentences in length-sorted batches of 32 and 128 (each padded to its
  longest), counting real tokens only;
- batches of one repeated token at fixed lengths and batch sizes (no padding at all): the rate a
  graph that carried no pad tokens could reach at best;
then each real batch of 32 alone (its length, real and padded tokens, padded tokens a second).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/explore/minilm_unpadded_bound.py [--rounds 5]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import sys  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from minilm_int8_setup import minilm_int8  # noqa: E402

from accelkit.export.onnx import export_onnx  # noqa: E402

SHAPES = ((32, 16), (32, 24), (32, 48), (64, 24), (128, 24), (8, 96))  # (batch, length), no padding


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    setup = minilm_int8()
    request = setup.int8_request(export_onnx(setup.model, setup.example))
    feeds = {b: setup.feeds(b) for b in (32, 128)}
    data = setup.wl.eval_data()
    tokens = sum(int(f["attention_mask"].sum()) for f in feeds[32])
    first = feeds[32][0]

    def uniform(batch: int, length: int) -> dict:
        return {k: np.full((batch, length), 0 if k == "token_type_ids" else 1 if k == "attention_mask" else 100,
                           dtype=v.dtype) for k, v in first.items()}

    rows = {f"sorted batch {b}, padded": (lambda fs=feeds[b]: [request.infer(f) for f in fs], tokens) for b in (32, 128)}
    for batch, length in SHAPES:
        feed, calls = uniform(batch, length), max(1, tokens // (batch * length))
        rows[f"batch {batch} x {length}, no padding"] = (
            lambda f=feed, n=calls: [request.infer(f) for _ in range(n)], calls * batch * length)
    for run, _ in rows.values():
        run()
    times: dict[str, list[float]] = {k: [] for k in rows}
    for _ in range(args.rounds):
        for name, (run, _) in rows.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    padded = {b: sum(f["attention_mask"].size for f in feeds[b]) for b in feeds}
    print(f"{len(data)} sentences, {tokens} tokens; with padding {padded[32]} (batch 32), {padded[128]} (batch 128)")
    for name, (_, n) in rows.items():
        print(f"{name:28s} {n / statistics.median(times[name]):8.0f} tokens/s")
    print("\nbatches of 32 alone: length, real tokens, padded tokens, ms, padded tokens/s")
    for f in feeds[32]:
        runs = []
        for _ in range(7):
            start = time.perf_counter()
            request.infer(f)
            runs.append(time.perf_counter() - start)
        t, mask = statistics.median(runs), f["attention_mask"]
        print(f"{mask.shape[1]:4d} {int(mask.sum()):6d} {mask.size:6d} {t * 1e3:7.2f} {mask.size / t:8.0f}")


if __name__ == "__main__":
    main()
