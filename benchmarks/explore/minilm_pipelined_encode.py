"""Experiment (issue 27): a shipped minilm folder's ``encode`` as it is (each batch split across the
two streams, waited for, then pooled) against the same folder with whole batches in flight (batch
k starts on a free stream while batch k-1 is pooled; each batch shape compiled once, as the
static-shapes plan does), end to end: tokenizing, padding, inference and pooling.

    HF_HUB_OFFLINE=1 ACCELKIT_THREADS=2 .venv/bin/python benchmarks/explore/minilm_pipelined_encode.py out/opt-minilm-static/model [--rounds 9] [--batch 32,64]

Prints the median time of a pass per row, the median of pair ratios (interleaved rounds) and the
largest difference from the folder's own ``encode``.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402

import accelkit  # noqa: E402
from accelkit._threads import thread_count  # noqa: E402
from accelkit.signal_stack import keep_signal_stack  # noqa: E402
from accelkit.tasks import get_task  # noqa: E402
from accelkit.workloads import get_workload  # noqa: E402

SETTINGS: dict = {}


def compile_shape(module, key: tuple):
    """The runtime's graph compiled for the input shapes ``key`` ((name, shape) pairs), with this
    script's settings."""
    m = module._model.clone()
    m.reshape({k: list(s) for k, s in key})
    with keep_signal_stack():
        return module._core.compile_model(m, "CPU", {**module._settings, **SETTINGS})


def pipelined(model, texts: list[str], batch_size: int, compiled: dict, depth: int) -> np.ndarray:
    """Embeddings with up to ``depth`` whole batches in flight, each on a request of its shape's compile."""
    module = model.model
    spec = get_task(model.task)
    max_length = int(model.pipeline["max_length"])
    out = torch.empty((len(texts), 384))
    pending: list[tuple] = []
    slot = 0

    def finish(item) -> None:
        request, idx, inputs = item
        request.wait()
        hidden = torch.from_numpy(request.get_output_tensor(0).data.copy())
        emb = spec.reduce(hidden, inputs, pooling="mean", width=max_length)
        out[torch.as_tensor(idx)] = torch.nn.functional.normalize(emb, dim=1) if model.pipeline.get("normalize") else emb

    for _, idx, inputs in model.padded_batches(texts, max_length, batch_size, sort_by_length=True):
        feeds = {k: v.numpy() for k, v in inputs.items()}
        key = tuple((k, v.shape) for k, v in sorted(feeds.items()))
        requests = compiled.get(key)
        if requests is None:
            c = compile_shape(module, key)
            requests = compiled[key] = [c.create_infer_request() for _ in range(depth)]
        if len(pending) >= depth:
            finish(pending.pop(0))
        request = requests[slot % depth]
        slot += 1
        request.start_async(feeds)
        pending.append((request, idx, inputs))
    for item in pending:
        finish(item)
    return out.numpy()


def overlapped(model, texts: list[str], batch_size: int, compiled: dict) -> np.ndarray:
    """Each batch split across the two streams as ``encode`` does, but started before the previous
    batch is pooled and the next one padded, so the Python work runs while OpenVINO infers."""
    from accelkit.runtimes.streams import split_rows

    module = model.model
    spec = get_task(model.task)
    max_length = int(model.pipeline["max_length"])
    out = torch.empty((len(texts), 384))
    pending = None
    slot = 0

    def finish(item) -> None:
        requests, idx, inputs = item
        for r in requests:
            r.wait()
        hidden = torch.from_numpy(np.concatenate([r.get_output_tensor(0).data.copy() for r in requests]))
        emb = spec.reduce(hidden, inputs, pooling="mean", width=max_length)
        out[torch.as_tensor(idx)] = torch.nn.functional.normalize(emb, dim=1) if model.pipeline.get("normalize") else emb

    for _, idx, inputs in model.padded_batches(texts, max_length, batch_size, sort_by_length=True):
        feeds = {k: v.numpy() for k, v in inputs.items()}
        parts = split_rows(feeds, 2)
        key = tuple((k, v.shape) for k, v in sorted(parts[0].items()))
        sets = compiled.get(key)
        if sets is None:
            c = compile_shape(module, key)
            sets = compiled[key] = [[c.create_infer_request() for _ in range(2)] for _ in range(2)]
        requests = sets[slot % 2]
        slot += 1
        for r, part in zip(requests, parts, strict=True):
            r.start_async(part)
        if pending is not None:
            finish(pending)
        pending = (requests, idx, inputs)
    if pending is not None:
        finish(pending)
    return out.numpy()


def one_thread(fn, *args):
    with thread_count(1):
        return fn(*args)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--batch", default="32")
    parser.add_argument("--text", default=None, help="one sentence a line (default: minilm's held-out pydoc set)")
    parser.add_argument("--no-pinning", action="store_true")
    parser.add_argument("--whole", action="store_true", help="also whole batches queued, one a stream")
    args = parser.parse_args()
    if args.no_pinning:
        SETTINGS["ENABLE_CPU_PINNING"] = False
    if args.text:
        with open(args.text) as fh:
            texts = [line.strip() for line in fh if line.strip()]
    else:
        texts = list(get_workload("minilm").eval_data())
    model = accelkit.load(args.model)
    batches = [int(b) for b in args.batch.split(",")]
    compiled: dict = {}
    rows = {"encode 32": lambda: model.encode(texts, batch_size=32)}
    split_compiled: dict = {}
    for b in batches:
        rows[f"overlapped {b}"] = lambda b=b: one_thread(overlapped, model, texts, b, split_compiled)
    for b in batches if args.whole else ():
        rows[f"pipelined {b}"] = lambda b=b: one_thread(pipelined, model, texts, b, compiled, 2)
    ref = rows["encode 32"]()
    for name, fn in rows.items():
        got = fn()
        print(f"{name}: largest difference from encode: {float(np.abs(got - ref).max()):.2e}")
    times: dict[str, list[float]] = {k: [] for k in rows}
    for _ in range(args.rounds):
        for name, fn in rows.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    base = times["encode 32"]
    for name, t in times.items():
        pairs = [a / b for a, b in zip(base, t, strict=True)]
        print(f"{name:>14}: {statistics.median(t) * 1e3:7.1f} ms a pass, {len(texts) / statistics.median(t):7.1f}/s, "
              f"{statistics.median(pairs):.3f}x (pairs {min(pairs):.2f}-{max(pairs):.2f})")


if __name__ == "__main__":
    main()
