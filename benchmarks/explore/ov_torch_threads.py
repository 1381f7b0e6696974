"""Experiment (issue 27): torch's thread count beside an OpenVINO model. minilm through OpenVINO bf16
(one request, 2 OpenVINO threads) on 512 held-out pre-tokenized batches of 32: the module's own
calls, then the workload's forward (the module and torch's mean pooling) at 2 and at 1 torch
threads; median of 7 passes each, the whole set twice (the first is a warm-up of sorts).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/explore/ov_torch_threads.py
"""

import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402

from accelkit.export.onnx import export_onnx  # noqa: E402
from accelkit.runtimes.openvino import OpenVinoConfig, OpenVinoModule  # noqa: E402
from accelkit.workloads import get_workload  # noqa: E402


def median_ms(fn, n: int = 7) -> float:
    fn()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    wl = get_workload("minilm")
    model = wl.build_model().eval()
    data, s = wl.eval_data(), wl.default_settings().with_(batch_size=32)
    module = OpenVinoModule(export_onnx(model, wl.example_inputs(wl.calib_data(64), s)),
                            OpenVinoConfig(precision="bf16", streams=1, threads=2))
    batches = [b for b, _ in wl.batches(data, s)]
    for _ in range(2):
        torch.set_num_threads(2)
        print(f"module calls             {median_ms(lambda: [module(**b) for b in batches]):6.0f} ms")
        for threads in (2, 1):
            torch.set_num_threads(threads)
            with torch.inference_mode():
                ms = median_ms(lambda: [wl.forward(module, b) for b in batches])
            print(f"forward, {threads} torch thread(s) {ms:6.0f} ms")


if __name__ == "__main__":
    main()
