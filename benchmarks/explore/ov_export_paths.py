"""Experiment (issue 27): minilm through OpenVINO from two graphs — accelkit's TorchScript ONNX export
and OpenVINO's own PyTorch frontend (``ov.convert_model``, what optimum-intel and so
sentence-transformers' OpenVINO backend use) — in bf16 and NNCF int8, 1 and 2 streams; held-out
sentences through the workload (tokenization included), interleaved rounds, median, 2 threads.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/explore/ov_export_paths.py [--rounds 5]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import openvino as ov  # noqa: E402
import torch  # noqa: E402

from accelkit.export.onnx import _as_named_inputs, _eager_attention, export_onnx, named_numpy_inputs  # noqa: E402
from accelkit.runtimes.openvino import OpenVinoConfig, OpenVinoModule  # noqa: E402
from accelkit.techniques.openvino_runtime import quantize_onnx_nncf  # noqa: E402
from accelkit.workloads import get_workload  # noqa: E402


def from_ov_model(ov_model, precision: str, streams: int) -> OpenVinoModule:
    """An OpenVinoModule around an ov.Model (not an ONNX file), compiled as the runtime compiles."""
    module = object.__new__(OpenVinoModule)
    module.onnx_bytes, module.flop_reference, module.device = b"", None, "cpu"
    module.config = OpenVinoConfig(precision=precision, streams=streams)
    settings = {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": 2, "NUM_STREAMS": streams,
                "PERFORMANCE_HINT": "THROUGHPUT" if streams > 1 else "LATENCY"}
    module._compiled = ov.Core().compile_model(ov_model, "CPU", settings)
    module._requests = [module._compiled.create_infer_request() for _ in range(streams)]
    module.inputs = [p.get_any_name() for p in module._compiled.inputs]
    module._threads, module.extra = 2, {}
    return module


def op_counts(compiled) -> dict[str, int]:
    counts: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        kind = op.get_rt_info()["layerType"].astype(str)
        counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", default="", help="comma-separated rows to time [default: all]")
    args = parser.parse_args()
    torch.set_num_threads(2)
    wl = get_workload("minilm")
    model = wl.build_model().eval()
    s = wl.default_settings()
    data = wl.eval_data()
    example = wl.example_inputs(wl.calib_data(64), s)
    names, tensors = _as_named_inputs(example)
    graph = export_onnx(model, example)
    with torch.no_grad(), _eager_attention(model):  # the attention the ONNX export writes
        converted = ov.convert_model(model, example_input=dict(zip(names, tensors, strict=True)))
    for i, name in enumerate(names):
        converted.inputs[i].get_tensor().set_names({name})
    samples = [named_numpy_inputs(inputs) for inputs, _ in wl.batches(wl.calib_data(256), s.with_(batch_size=1))]
    import nncf

    qdq = quantize_onnx_nncf(graph, samples)
    ov_int8 = nncf.quantize(converted, nncf.Dataset(samples), preset=nncf.QuantizationPreset.MIXED,
                            model_type=nncf.ModelType.TRANSFORMER, subset_size=len(samples))
    variants = {}
    for streams in (1, 2):
        variants[f"onnx-bf16-{streams}s"] = OpenVinoModule(graph, OpenVinoConfig(precision="bf16", streams=streams))
        variants[f"fe-bf16-{streams}s"] = from_ov_model(converted, "bf16", streams)
        variants[f"onnx-int8-{streams}s"] = OpenVinoModule(qdq, OpenVinoConfig(precision="bf16", streams=streams))
        variants[f"fe-int8-{streams}s"] = from_ov_model(ov_int8, "bf16", streams)
    if args.rows:
        variants = {name: variants[name] for name in args.rows.split(",")}
    for name in [n for n in ("onnx-bf16-1s", "fe-bf16-1s", "onnx-int8-1s", "fe-int8-1s") if n in variants]:
        print(name, op_counts(variants[name]._compiled))
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
        print(f"{name:16s} {len(data) / statistics.median(times[name]):7.0f} sentences/s")


if __name__ == "__main__":
    main()
