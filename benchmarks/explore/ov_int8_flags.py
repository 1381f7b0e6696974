"""Experiment (issue 27): OpenVINO CPU settings on minilm's int8 graph (the one ``openvino-int8``
builds): the runtime's settings, with ``CPU_DENORMALS_OPTIMIZATION`` on, and with an f32 precision
hint for the parts that are not int8; infer alone on the 512 held-out sentences' batches of 32,
9 interleaved rounds, ratio to the runtime's settings (median of rounds).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/explore/ov_int8_flags.py
"""

import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import openvino as ov  # noqa: E402
import torch  # noqa: E402

from accelkit.export.onnx import export_onnx, named_numpy_inputs  # noqa: E402
from accelkit.techniques.openvino_runtime import quantize_onnx_nncf  # noqa: E402
from accelkit.workloads import get_workload  # noqa: E402


def main() -> None:
    torch.set_num_threads(2)
    wl = get_workload("minilm")
    model = wl.build_model().eval()
    settings = wl.default_settings().with_(batch_size=32)
    graph = export_onnx(model, wl.example_inputs(wl.calib_data(64), settings))
    samples = [named_numpy_inputs(i) for i, _ in wl.batches(wl.calib_data(256), settings.with_(batch_size=1))]
    int8 = quantize_onnx_nncf(graph, samples)
    feeds = [named_numpy_inputs(i) for i, _ in wl.batches(wl.eval_data(), settings)]
    core = ov.Core()
    read = core.read_model(model=int8)
    base = {"INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": 2, "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY"}
    variants = {"runtime's": base, "denormals": {**base, "CPU_DENORMALS_OPTIMIZATION": True},
                "f32-rest": {**base, "INFERENCE_PRECISION_HINT": "f32"}}
    requests = {n: core.compile_model(read, "CPU", c).create_infer_request() for n, c in variants.items()}
    times: dict[str, list[float]] = {n: [] for n in requests}
    for _ in range(9):
        for name, request in requests.items():
            start = time.perf_counter()
            for feed in feeds:
                request.infer(feed)
            times[name].append(time.perf_counter() - start)
    for name in requests:
        ratio = statistics.median(b / t for b, t in zip(times["runtime's"], times[name], strict=True))
        print(f"{name:10s} {len(wl.eval_data()) / statistics.median(times[name]):6.0f} sentences/s (infer alone)  "
              f"{ratio:.3f}x the runtime's settings")


if __name__ == "__main__":
    main()
