"""Experiment (issue 24): one batch of 8 rows decoded by accelkit's stateful OpenVINO graph as one
request on 2 threads, against the same rows split in halves over 2 streams (1 thread each), both
halves stepped at once with OpenVINO's async requests. Greedy decode steps after a 32-token prompt
(f32 compute and cache), ms a step over 64 steps, median of 5 passes after a first, alternating.

    ACCELKIT_CACHE=<generate_llama's models> HF_HUB_OFFLINE=1 PYTHONPATH=src \\
        .venv/bin/python benchmarks/explore/ov_split_streams.py [--batch 8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import generate_llama  # noqa: E402

from accelkit.export.openvino_lm import export_stateful_lm  # noqa: E402

BASE = {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32", "INFERENCE_NUM_THREADS": 2}


def decode(requests, rows: int, prompt: int = 32, steps: int = 64) -> float:
    """ms a step with the rows split evenly over ``requests``, all stepped together."""
    rng = np.random.default_rng(0)
    parts = np.array_split(np.arange(rows), len(requests))
    tokens = []
    for r, part in zip(requests, parts, strict=True):
        r.reset_state()
        n = len(part)
        r.start_async({"input_ids": rng.integers(5, 1000, (n, prompt)), "attention_mask": np.ones((n, prompt), np.int64),
                       "position_ids": np.tile(np.arange(prompt), (n, 1)), "beam_idx": np.arange(n, dtype=np.int32)})
    for r in requests:
        r.wait()
        tokens.append(r.get_tensor("logits").data.argmax(-1)[:, None].astype(np.int64))
    start = time.perf_counter()
    for k in range(steps):
        for i, (r, part) in enumerate(zip(requests, parts, strict=True)):
            n = len(part)
            r.start_async({"input_ids": tokens[i], "attention_mask": np.ones((n, prompt + k + 1), np.int64),
                           "position_ids": np.full((n, 1), prompt + k), "beam_idx": np.arange(n, dtype=np.int32)})
        for i, r in enumerate(requests):
            r.wait()
            tokens[i] = r.get_tensor("logits").data.argmax(-1)[:, None].astype(np.int64)
    return (time.perf_counter() - start) * 1e3 / steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import openvino as ov

    torch.set_num_threads(1)
    _, wl = generate_llama.heldout_workload(Path(tempfile.mkdtemp()))
    graph = export_stateful_lm(wl.build_model())
    core = ov.Core()
    one = core.compile_model(graph, "CPU", {**BASE, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"})
    two = core.compile_model(graph, "CPU", {**BASE, "NUM_STREAMS": 2, "PERFORMANCE_HINT": "THROUGHPUT"})
    setups = {"1 request x 2 threads": [one.create_infer_request()],
              "2 streams x 1 thread, halves": [two.create_infer_request(), two.create_infer_request()]}
    times: dict[str, list[float]] = {n: [] for n in setups}
    for _ in range(6):
        for name, requests in setups.items():
            times[name].append(decode(requests, args.batch))
    base = times["1 request x 2 threads"]
    for name in setups:
        ratio = statistics.median(b / t for b, t in zip(base[1:], times[name][1:], strict=True))
        print(f"batch {args.batch}  {name:30s} {statistics.median(times[name][1:]):6.2f} ms a step  "
              f"{ratio:.3f}x the one-request step", flush=True)


if __name__ == "__main__":
    main()
