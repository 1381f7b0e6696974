"""Experiment (issue 24): where a decode step's time goes in accelkit's stateful OpenVINO graph
against optimum-intel's, on generate_llama.py's trained Llama at batch 8, both compiled with the
same settings (f32 precision, f16 cache, one stream, 2 threads), each in a process of its own.

    ACCELKIT_CACHE=<generate_llama's models> HF_HUB_OFFLINE=1 PYTHONPATH=src \
        .venv-peers/bin/python benchmarks/explore/ov_generate_profile.py {accelkit,optimum} [--batch 8] [--kv-cache f16]

Prints the mean time of one decode step (prompt of 32 tokens, then 64 steps; 5 passes, the first
dropped) and OpenVINO's per-op-type counters summed over the steps of the last pass, largest first.
"""

from __future__ import annotations

import argparse
import collections
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

SETTINGS = {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f16", "INFERENCE_NUM_THREADS": 2,
            "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": True}


def graph(which: str, target: Path, model: torch.nn.Module):
    if which == "accelkit":
        from accelkit.export.openvino_lm import export_stateful_lm

        return export_stateful_lm(model)
    from optimum.intel import OVModelForCausalLM

    return OVModelForCausalLM.from_pretrained(target, export=True, compile=False).model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("which", choices=("accelkit", "optimum"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--kv-cache", default="f16", choices=("f32", "f16", "u8"), help="KV_CACHE_PRECISION")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import openvino as ov

    torch.set_num_threads(1)
    target, wl = generate_llama.heldout_workload(Path(tempfile.mkdtemp()))
    model = wl.build_model()
    g = graph(args.which, target, model)
    print("inputs:", [p.get_any_name() for p in g.inputs], "outputs:", [p.get_any_name() for p in g.outputs][:2])
    compiled = ov.Core().compile_model(g, "CPU", {**SETTINGS, "KV_CACHE_PRECISION": args.kv_cache})
    runtime = collections.Counter(op.get_rt_info()["layerType"].astype(str) for op in compiled.get_runtime_model().get_ops())
    print("runtime graph:", dict(runtime.most_common()))
    request = compiled.create_infer_request()
    b, prompt = args.batch, 32
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 1000, (b, prompt)).astype(np.int64)
    beam = np.arange(b, dtype=np.int32)
    has_logits = args.which == "optimum"
    step_ms: list[float] = []
    for _ in range(5):
        request.reset_state()
        mask = np.ones((b, prompt), dtype=np.int64)
        out = request.infer({"input_ids": ids, "attention_mask": mask,
                             "position_ids": np.tile(np.arange(prompt), (b, 1)), "beam_idx": beam})
        token = (out["logits"][:, -1] if has_logits else out["logits"]).argmax(-1)[:, None].astype(np.int64)
        per_type: collections.Counter = collections.Counter()
        start = time.perf_counter()
        for k in range(args.steps):
            mask = np.ones((b, prompt + k + 1), dtype=np.int64)
            out = request.infer({"input_ids": token, "attention_mask": mask,
                                 "position_ids": np.full((b, 1), prompt + k), "beam_idx": beam})
            token = (out["logits"][:, -1] if has_logits else out["logits"]).argmax(-1)[:, None].astype(np.int64)
            for info in request.profiling_info:
                per_type[info.node_type] += info.real_time.total_seconds() * 1e3
        step_ms.append((time.perf_counter() - start) * 1e3 / args.steps)
    print(f"{args.which}: {statistics.median(step_ms[1:]):.3f} ms a decode step at batch {b} "
          f"(passes: {', '.join(f'{s:.2f}' for s in step_ms)})")
    total = sum(per_type.values())
    for name, ms in per_type.most_common(15):
        print(f"  {name:34s} {ms / args.steps:7.3f} ms  {ms / total:6.1%}")


if __name__ == "__main__":
    main()
