"""Experiment (issue 27): minilm's predict through OpenVINO int8 (the graph `openvino-int8` builds,
one request set, 2 threads) with the next batch submitted before the last one's output is pooled
(``accelkit.runtimes.base.overlapped``) against one batch at a time, and against OpenVINO's infer
alone on pre-tokenized batches (the floor); 512 held-out sentences, batch 32, interleaved rounds,
median.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/explore/ov_overlap.py [--rounds 7] [--precision bf16]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402

from accelkit.export.onnx import _as_named_inputs, export_onnx  # noqa: E402
from accelkit.runtimes.openvino import OpenVinoConfig, OpenVinoModule  # noqa: E402
from accelkit.techniques.openvino_runtime import quantize_onnx_nncf  # noqa: E402
from accelkit.workloads import get_workload  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--precision", default="int8", choices=("int8", "bf16"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    wl = get_workload("minilm")
    model = wl.build_model().eval()
    s = wl.default_settings().with_(batch_size=32)
    data = wl.eval_data()
    graph = export_onnx(model, wl.example_inputs(wl.calib_data(64), s))
    if args.precision == "int8":
        samples = []
        for inputs, _ in wl.batches(wl.calib_data(256), s.with_(batch_size=1)):
            n, t = _as_named_inputs(inputs)
            samples.append({k: v.numpy() for k, v in zip(n, t, strict=True)})
        graph = quantize_onnx_nncf(graph, samples)
    module = OpenVinoModule(graph, OpenVinoConfig(precision="bf16", streams=1, threads=2))
    feeds = []
    for inputs, _ in wl.batches(data, s):
        n, t = _as_named_inputs(inputs)
        feeds.append({k: v.numpy() for k, v in zip(n, t, strict=True)})
    request = module._requests[0]
    reference = wl.predict(model, data, s)

    def predict(overlap: bool) -> torch.Tensor:
        wl.forward_calls_model_once = overlap  # on the instance: the class default stays
        return wl.predict(module, data, s)

    torch.testing.assert_close(predict(True), predict(False), rtol=0, atol=0)
    print(args.precision, {k: round(v, 4) for k, v in wl.quality(predict(True), reference, data).items()})
    calls = {"one at a time": lambda: predict(False), "overlapped": lambda: predict(True),
             "infer alone": lambda: [request.infer(f) for f in feeds]}
    times = {k: [] for k in calls}
    for _ in range(args.rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    for name in calls:
        t = statistics.median(times[name])
        print(f"{name:14s} {t * 1e3:7.1f} ms  {len(data) / t:6.0f} sentences/s")
    pairs = [a / b for a, b in zip(times["one at a time"], times["overlapped"], strict=True)]
    print(f"overlapped / one at a time: {statistics.median(pairs):.3f}x (median of {len(pairs)} pairs)")


if __name__ == "__main__":
    main()
