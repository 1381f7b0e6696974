"""Experiment (issue 27): where a shipped ``openvino-int8+static-shapes`` minilm folder's ``encode``
of the 512 held-out pydoc sentences spends its time (tokenizing and padding, OpenVINO's calls, the
rest), with every shape compiled (``settle``), and OpenVINO's own counters by node type over one
pass (each batch split across the two streams, as the runtime runs it).

    HF_HUB_OFFLINE=1 ACCELKIT_THREADS=2 .venv/bin/python benchmarks/explore/minilm_static_profile.py out/opt-minilm-static/model [--rounds 7]
"""

import argparse
import collections
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import accelkit  # noqa: E402
from accelkit.runtimes.streams import split_rows  # noqa: E402
from accelkit.workloads import get_workload  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    texts = list(get_workload("minilm").eval_data())
    model = accelkit.load(args.model)
    module = model.model
    module._settings["PERF_COUNT"] = True  # read by the static compiles, which settle makes below
    model.encode(texts)
    model.settle()
    run, spent = module.run, [0.0]

    def timed_run(*a, **k):
        start = time.perf_counter()
        out = run(*a, **k)
        spent[0] += time.perf_counter() - start
        return out

    module.run = timed_run
    whole, calls, pads = [], [], []
    for _ in range(args.rounds):
        spent[0] = 0.0
        start = time.perf_counter()
        model.encode(texts)
        whole.append(time.perf_counter() - start)
        calls.append(spent[0])
        start = time.perf_counter()
        list(model.padded_batches(texts, 256, 32, sort_by_length=True))
        pads.append(time.perf_counter() - start)
    module.run = run
    w, c, p = (statistics.median(x) * 1e3 for x in (whole, calls, pads))
    print(f"encode {w:.1f} ms a pass: OpenVINO's calls {c:.1f} ms ({100 * c / w:.0f}%), tokenizing and padding "
          f"{p:.1f} ms ({100 * p / w:.0f}%), the rest {w - c - p:.1f} ms")
    from accelkit.runtimes.openvino import _shape_key

    batches = [{k: v.numpy() for k, v in inputs.items()} for _, _, inputs in
               model.padded_batches(texts, 256, 32, sort_by_length=True)]
    counters: collections.Counter = collections.Counter()
    for feeds in batches:
        parts = split_rows(feeds, len(module._requests))
        requests = [module._requests_for(_shape_key(part))[i] for i, part in enumerate(parts)]
        for request, part in zip(requests, parts, strict=True):
            request.start_async(part)
        for request in requests:
            request.wait()
        for request in requests:
            for info in request.get_profiling_info():
                counters[(info.node_type, info.exec_type)] += info.real_time.total_seconds() * 1e3
    total = sum(counters.values())
    print(f"OpenVINO's counters, one pass, both streams: {total:.1f} ms of op time")
    for (node, kernel), ms in counters.most_common(10):
        print(f"  {node:30s} {kernel:22s} {ms:7.1f} ms {100 * ms / total:5.1f}%")


if __name__ == "__main__":
    main()
