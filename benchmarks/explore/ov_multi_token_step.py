"""Experiment (issue 24): what verifying k tokens a row costs in accelkit's stateful OpenVINO graph
of generate_llama.py's trained Llama: one call reading k new tokens a row at batch 8 after a
32-token prompt (f32 compute and cache, one request, 2 threads), for k = 1..8; median of 3 passes of
12 calls after a first pass. Speculative decoding pays only if a k-token call costs well under k
one-token calls.

    ACCELKIT_CACHE=<generate_llama's models> HF_HUB_OFFLINE=1 PYTHONPATH=src \\
        .venv/bin/python benchmarks/explore/ov_multi_token_step.py [--batch 8]
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import openvino as ov

    torch.set_num_threads(1)
    _, wl = generate_llama.heldout_workload(Path(tempfile.mkdtemp()))
    graph = export_stateful_lm(wl.build_model())
    compiled = ov.Core().compile_model(graph, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32",
                                                      "INFERENCE_NUM_THREADS": 2, "NUM_STREAMS": 1,
                                                      "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    b, prompt, calls = args.batch, 32, 12
    beam = np.arange(b, dtype=np.int32)
    rng = np.random.default_rng(0)
    for k in (1, 2, 3, 4, 5, 6, 8):
        passes = []
        for _ in range(4):
            request.reset_state()
            length = prompt
            request.infer({"input_ids": rng.integers(5, 1000, (b, length)), "attention_mask": np.ones((b, length), np.int64),
                           "position_ids": np.tile(np.arange(length), (b, 1)), "beam_idx": beam})
            start = time.perf_counter()
            for _ in range(calls):
                request.infer({"input_ids": rng.integers(5, 1000, (b, k)),
                               "attention_mask": np.ones((b, length + k), np.int64),
                               "position_ids": np.tile(np.arange(length, length + k), (b, 1)), "beam_idx": beam})
                length += k
            passes.append((time.perf_counter() - start) / calls * 1e3)
        print(f"{k} new tokens a row at batch {b}: {statistics.median(passes[1:]):.2f} ms a call", flush=True)


if __name__ == "__main__":
    main()
