"""Experiment (issue 27): where minilm's OpenVINO int8 time goes, against the measured int8 peak.

Builds the graph `openvino-int8` builds (accelkit's ONNX export, NNCF int8, transformer preset),
compiles it for one request on 2 threads with OpenVINO's per-layer counters on, and reports on
512 held-out sentences at batch 32 (length-sorted, as the workload batches them):
- the whole predict (tokenize + infer + pool) against infer alone on pre-tokenized batches;
- infer with each batch padded to a multiple of 8 / 16 tokens (fewer distinct shapes);
- OpenVINO's time per layer type (its profiling counters), and the model's int8 GOP/s against the
  machine's measured int8 GEMM peak (accelkit.measure.roofline).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/explore/ov_int8_profile.py [--rounds 5]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402

from accelkit.export.onnx import export_onnx, named_numpy_inputs  # noqa: E402
from accelkit.measure.roofline import measure_roofline  # noqa: E402
from accelkit.runtimes.openvino import OpenVinoConfig, OpenVinoModule  # noqa: E402
from accelkit.techniques.openvino_runtime import quantize_onnx_nncf  # noqa: E402
from accelkit.workloads import get_workload  # noqa: E402


def pad_to(feeds: dict, multiple: int) -> dict:
    length = next(iter(feeds.values())).shape[1]
    extra = -length % multiple
    if not extra:
        return feeds
    return {k: np.pad(v, ((0, 0), (0, extra))) for k, v in feeds.items()}  # pad id 0, mask 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    wl = get_workload("minilm")
    model = wl.build_model().eval()
    s = wl.default_settings().with_(batch_size=32)
    data = wl.eval_data()
    graph = export_onnx(model, wl.example_inputs(wl.calib_data(64), s))
    samples = [named_numpy_inputs(inputs) for inputs, _ in wl.batches(wl.calib_data(256), s.with_(batch_size=1))]
    int8 = quantize_onnx_nncf(graph, samples)
    module = OpenVinoModule(int8, OpenVinoConfig(precision="bf16", streams=1))
    feeds = [named_numpy_inputs(inputs) for inputs, _ in wl.batches(data, s)]
    tokens = sum(int(f["attention_mask"].sum()) for f in feeds)
    padded = sum(f["attention_mask"].size for f in feeds)
    request = module._requests[0]

    def infer(multiple: int = 1) -> None:
        for f in feeds:
            request.infer(pad_to(f, multiple) if multiple > 1 else f)

    calls = {"predict": lambda: wl.predict(module, data, s), "infer": infer,
             "infer-pad8": lambda: infer(8), "infer-pad16": lambda: infer(16)}
    for call in calls.values():
        call()
    times = {k: [] for k in calls}
    for _ in range(args.rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    print(f"{len(data)} sentences, {tokens} tokens ({padded} with padding), {len(feeds)} batches")
    for name in calls:
        t = statistics.median(times[name])
        print(f"{name:12s} {t * 1e3:7.1f} ms  {len(data) / t:6.0f} sentences/s")

    # per layer type, from OpenVINO's counters (a separate compile with PERF_COUNT on)
    import openvino as ov

    core = ov.Core()
    path = "/tmp/accelkit-int8-profile.onnx"
    with open(path, "wb") as fh:
        fh.write(int8)
    compiled = core.compile_model(core.read_model(path), "CPU", {"INFERENCE_PRECISION_HINT": "bf16",
                                  "INFERENCE_NUM_THREADS": 2, "NUM_STREAMS": 1, "PERF_COUNT": True,
                                  "PERFORMANCE_HINT": "LATENCY"})
    req = compiled.create_infer_request()
    by_type: dict[str, float] = {}
    by_exec: dict[str, float] = {}
    for f in feeds:
        req.infer(f)
        for info in req.profiling_info:
            us = info.real_time.total_seconds() * 1e6
            by_type[info.node_type] = by_type.get(info.node_type, 0.0) + us
            key = f"{info.node_type}:{info.exec_type}"
            by_exec[key] = by_exec.get(key, 0.0) + us
    total = sum(by_type.values())
    print(f"\nOpenVINO counters, one pass over the {len(feeds)} batches: {total / 1e3:.1f} ms")
    for kind, us in sorted(by_exec.items(), key=lambda kv: -kv[1])[:14]:
        print(f"  {kind:40s} {us / 1e3:7.1f} ms {us / total:6.1%}")

    # the GEMM work per pass (weights x tokens, with padding) against the measured int8 peak
    from torch.utils.flop_counter import FlopCounterMode

    flops = 0
    with FlopCounterMode(display=False) as counter:
        for inputs, _ in wl.batches(data, s):
            with torch.no_grad():
                model(**inputs) if isinstance(inputs, dict) else model(inputs)
    flops = counter.get_total_flops()
    roof = measure_roofline(size=256, repeats=5)
    t = statistics.median(times["infer"])
    fc = sum(us for k, us in by_exec.items() if k.startswith(("FullyConnected", "MatMul"))) / 1e6
    print(f"\nmodel work {flops / 1e9:.1f} GFLOP per pass; infer {flops / t / 1e9:.0f} GOP/s; GEMM layers alone "
          f"{flops / fc / 1e9:.0f} GOP/s (counters)")
    print(f"measured peaks: fp32 {roof.fp32_gflops:.0f}, bf16 {roof.bf16_gflops:.0f}, int8 {roof.int8_gops:.0f} "
          f"GOP/s ({ {k: round(v.get('gflops') or 0) for k, v in roof.kernels.items()} })")
    print(f"infer at {flops / t / 1e9 / roof.int8_gops:.0%} of the int8 peak")


if __name__ == "__main__":
    main()
