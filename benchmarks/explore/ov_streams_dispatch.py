"""Experiment (issue 15): two OpenVINO streams driven by OpenVINO's own async requests (what
``OpenVinoModule`` does now) against two Python threads each calling ``infer()`` (what it did
before: it could deadlock pyopenvino on a first concurrent call). Same compiled minilm
``openvino-int8`` model, same requests, 512 held-out sentences, batch 32, interleaved rounds.

    HF_HUB_OFFLINE=1 .venv-peers/bin/python benchmarks/explore/ov_streams_dispatch.py
"""

import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("ACCELKIT_THREADS", "2")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from accelkit.export.onnx import split_rows  # noqa: E402
from accelkit.variants import build_variant  # noqa: E402
from accelkit.workloads import get_workload  # noqa: E402

torch.set_num_threads(2)
wl = get_workload("minilm")
model = wl.build_model()
settings = wl.default_settings(32)
built = build_variant("openvino-int8", model, settings, wl, max_quality_drop=0.01)
module = built.model
pool = ThreadPoolExecutor(len(module._requests))


def threads_call(*args, **kwargs):  # the former OpenVinoModule.__call__
    feeds = module._feeds(args, kwargs)
    parts = split_rows(feeds, len(module._requests))
    run = lambda rp: rp[0].infer(rp[1])[module._compiled.outputs[0]].copy()  # noqa: E731
    return torch.from_numpy(np.concatenate(list(pool.map(run, zip(module._requests, parts, strict=False)))))


data = wl.eval_data(512)
# one sequential call first: pyopenvino's first concurrent call is what could deadlock
module._requests[0].infer(module._feeds((), dict(next(iter(wl.batches(data, built.settings)))[0])))
runs = {"async requests": lambda: wl.predict(module, data, built.settings),
        "python threads": lambda: wl.predict(threads_call, data, built.settings)}
ref = runs["async requests"]()
assert torch.allclose(ref, runs["python threads"](), atol=1e-5)
times = {n: [] for n in runs}
for _ in range(7):
    for name, fn in runs.items():
        start = time.perf_counter()
        fn()
        times[name].append(time.perf_counter() - start)
ratios = [b / a for a, b in zip(times["async requests"], times["python threads"], strict=True)]
for name, t in times.items():
    print(f"{name:15s} {512 / statistics.median(t):6.1f} sentences/s")
print(f"async requests / python threads: {statistics.median(ratios):.3f}x (median of 7 pairs)")
