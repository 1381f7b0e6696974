"""Experiment (issue 15): one NNCF int8 QDQ graph of minilm (transformer preset) served by ONNX Runtime
and by OpenVINO, beside OpenVINO bf16; held-out sentences through the workload (tokenization
included), 5 rounds, median, 2 threads. Needs openvino and nncf (.venv-peers has both).

    HF_HUB_OFFLINE=1 .venv-peers/bin/python benchmarks/explore/nncf_int8_runtimes.py
"""

import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402

from accelkit.export.onnx import OrtConfig, OrtModule, export_onnx, named_numpy_inputs  # noqa: E402
from accelkit.techniques.openvino_runtime import OpenVinoConfig, OpenVinoModule, quantize_onnx_nncf  # noqa: E402
from accelkit.workloads import get_workload  # noqa: E402

torch.set_num_threads(2)
wl = get_workload("minilm")
model = wl.build_model()
s = wl.default_settings()
data = wl.eval_data()
plain = export_onnx(model, wl.example_inputs(wl.calib_data(64), s))
samples = [named_numpy_inputs(inputs) for inputs, _ in wl.batches(wl.calib_data(300), s.with_(batch_size=1))]
start = time.perf_counter()
qdq = quantize_onnx_nncf(plain, samples)
print(f"NNCF quantize: {time.perf_counter() - start:.1f} s on {len(samples)} samples")
variants = {
    "ort-qdq-2streams": OrtModule(qdq, OrtConfig(intra_op_threads=2, streams=2)),
    "ort-qdq-1stream": OrtModule(qdq, OrtConfig(intra_op_threads=2)),
    "ov-int8-f32-2streams": OpenVinoModule(qdq, OpenVinoConfig(precision="f32")),
    "ov-int8-bf16-2streams": OpenVinoModule(qdq, OpenVinoConfig(precision="bf16")),
}
ref = wl.predict(model, data, s)
for name, m in variants.items():
    print(name, {k: round(v, 4) for k, v in wl.quality(wl.predict(m, data, s), ref, data).items()})
times = {n: [] for n in variants}
for _ in range(5):
    for name, m in variants.items():
        start = time.perf_counter()
        wl.predict(m, data, s)
        times[name].append(time.perf_counter() - start)
for name in variants:
    print(f"{name:22s} {len(data) / statistics.median(times[name]):7.0f} sentences/s")
