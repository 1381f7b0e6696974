"""Experiment (issue 27): minilm's ONNX export with transformers' ``sdpa`` attention (what
``openvino-int8`` exports today: a boolean mask turned into -inf per layer, and NaN guards after
each softmax) against its ``eager`` attention (one float mask added to the scores), both through
NNCF int8 and OpenVINO at one request (``--ort``: also ONNX Runtime, fp32 and dynamic int8); held-out sentences through the workload (tokenization
included), interleaved rounds, median, 2 threads.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/explore/ov_attention_export.py [--rounds 5]
"""

import argparse
import copy
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
from ov_export_paths import op_counts  # noqa: E402  (a sibling script: the runtime graph's op types)

from accelkit.export.onnx import (  # noqa: E402
    OnnxExportConfig,
    OrtModule,
    export_onnx,
    named_numpy_inputs,
    quantize_onnx_dynamic,
)
from accelkit.runtimes.openvino import OpenVinoConfig, OpenVinoModule  # noqa: E402
from accelkit.techniques.openvino_runtime import quantize_onnx_nncf  # noqa: E402
from accelkit.workloads import get_workload  # noqa: E402


def with_attention(model: torch.nn.Module, implementation: str) -> torch.nn.Module:
    model = copy.deepcopy(model)
    for m in model.modules():
        if hasattr(m, "set_attn_implementation") and getattr(m, "config", None) is not None:
            m.set_attn_implementation(implementation)
            break
    return model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ort", action="store_true", help="also ONNX Runtime, fp32 and dynamic int8")
    parser.add_argument("--rows", default="", help="comma-separated rows to time [default: all]")
    args = parser.parse_args()
    torch.set_num_threads(2)
    wl = get_workload("minilm")
    model = wl.build_model().eval()
    s = wl.default_settings().with_(batch_size=32)
    data = wl.eval_data()
    example = wl.example_inputs(wl.calib_data(64), s)
    samples = [named_numpy_inputs(inputs) for inputs, _ in wl.batches(wl.calib_data(256), s.with_(batch_size=1))]
    variants = {}
    for implementation in ("sdpa", "eager"):
        # attention="model": the export keeps the copy's implementation (its default writes eager code)
        graph = export_onnx(with_attention(model, implementation), example, OnnxExportConfig(attention="model"))
        variants[f"{implementation}-int8"] = OpenVinoModule(quantize_onnx_nncf(graph, samples),
                                                            OpenVinoConfig(precision="bf16", streams=1))
        variants[f"{implementation}-bf16"] = OpenVinoModule(graph, OpenVinoConfig(precision="bf16", streams=1))
        if args.ort:
            variants[f"{implementation}-ort"] = OrtModule(graph)
            variants[f"{implementation}-ort-int8"] = OrtModule(quantize_onnx_dynamic(graph))
    if args.rows:
        variants = {name: variants[name] for name in args.rows.split(",")}
    for name, m in variants.items():
        if isinstance(m, OpenVinoModule):
            print(name, op_counts(m._compiled))
    ref = wl.predict(model, data, s)
    for name, m in variants.items():
        print(name, {k: round(v, 4) for k, v in wl.quality(wl.predict(m, data, s), ref, data).items()})
    times = {n: [] for n in variants}
    for _ in range(args.rounds):
        for name, m in variants.items():
            start = time.perf_counter()
            wl.predict(m, data, s)
            times[name].append(time.perf_counter() - start)
    for name in variants:
        print(f"{name:12s} {len(data) / statistics.median(times[name]):7.0f} sentences/s")


if __name__ == "__main__":
    main()
