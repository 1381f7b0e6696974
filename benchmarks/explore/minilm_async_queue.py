"""Experiment (issue 27): minilm's ``openvino-int8`` graph with whole batches in flight on its two
streams (an ``AsyncInferQueue`` of two jobs: the next batch starts as soon as a stream is free),
against the runtime's own call with two streams (each batch split across both, then waited for), on the
512 held-out pydoc sentences at batch 32, 2 threads. Inference only: the batches are tokenized
and padded beforehand, so this bounds what keeping both streams busy between batches could buy.

    HF_HUB_OFFLINE=1 ACCELKIT_THREADS=2 .venv/bin/python benchmarks/explore/minilm_async_queue.py [--rounds 15]

Prints the median time of a pass for each and the median of pair ratios (interleaved rounds).
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402

from accelkit.variants import build_variant  # noqa: E402
from accelkit.workloads import get_workload  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    import openvino as ov

    torch.set_num_threads(2)
    wl = get_workload("minilm")
    settings = wl.default_settings(32)
    module = build_variant("openvino-int8", wl.build_model(), settings, wl).model
    chosen = len(module._requests)
    module = module.with_streams(2)  # the probe picks 1 or 2 streams: their times are within a few %
    batches = [inputs for inputs, _ in wl.batches(wl.eval_data(), settings)]
    feeds = [{k: v.numpy() for k, v in inputs.items()} for inputs in batches]

    def split() -> list[np.ndarray]:
        return [module.run(**inputs).numpy() for inputs in batches]

    def queued() -> list[np.ndarray]:
        queue = ov.AsyncInferQueue(module._compiled, len(module._requests))
        outs: list[np.ndarray | None] = [None] * len(feeds)

        def keep(request, i):
            outs[i] = request.get_output_tensor(0).data.copy()

        queue.set_callback(keep)
        for i, f in enumerate(feeds):
            queue.start_async(f, i)
        queue.wait_all()
        return outs

    same = max(float(np.abs(a - b).max()) for a, b in zip(split(), queued(), strict=True))
    print(f"the build's probe chose {chosen} stream(s); both rows run 2; largest difference between them: {same}")
    times: dict[str, list[float]] = {"split": [], "queued": []}
    for _ in range(args.rounds):
        for name, run in (("split", split), ("queued", queued)):
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    pairs = [s / q for s, q in zip(times["split"], times["queued"], strict=True)]
    print(f"each batch split across the streams: {statistics.median(times['split']) * 1e3:.1f} ms a pass")
    print(f"whole batches queued on the streams: {statistics.median(times['queued']) * 1e3:.1f} ms a pass, "
          f"{statistics.median(pairs):.2f}x (pairs {min(pairs):.2f}-{max(pairs):.2f})")


if __name__ == "__main__":
    main()
