"""Experiment (issue 27): minilm's ``openvino-int8`` graph compiled once per batch shape (static
shapes, OpenVINO ``reshape``) against one dynamic-shape compile, each with the float parts in f32
and in bf16 (the runtime's choice on native-bf16 CPUs), on the 512 held-out pydoc sentences at
batch 32, 2 threads, every batch split across two streams. Inference only (batches tokenized
beforehand); interleaved rounds; ratios are medians of per-round ratios to the runtime's own
module. Cosine: mean-pooled embeddings against the fp32 PyTorch model (mean / worst sentence).

    HF_HUB_OFFLINE=1 ACCELKIT_THREADS=2 .venv/bin/python benchmarks/explore/minilm_static_shapes.py [--rounds 9] [--streams 2]
"""

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402

from accelkit.runtimes.streams import split_rows  # noqa: E402
from accelkit.tasks.pooling import mean_pool  # noqa: E402
from accelkit.variants import build_variant  # noqa: E402
from accelkit.workloads import get_workload  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--streams", type=int, default=2)
    args = parser.parse_args()
    import openvino as ov

    torch.set_num_threads(2)
    wl = get_workload("minilm")
    settings = wl.default_settings(32)
    fp32_model = wl.build_model()
    module = build_variant("openvino-int8", fp32_model, settings, wl).model.with_streams(args.streams)
    print(f"the runtime's module: float parts in {module.config.precision}, {len(module._requests)} streams")
    batches = [{k: v.numpy() for k, v in inputs.items()} for inputs, _ in wl.batches(wl.eval_data(), settings)]
    with torch.no_grad():
        outs = [fp32_model(**{k: torch.from_numpy(v) for k, v in f.items()}) for f in batches]
        ref = [mean_pool((o if isinstance(o, torch.Tensor) else o[0]).float(), torch.from_numpy(f["attention_mask"]))
               for o, f in zip(outs, batches, strict=True)]
        ref = torch.nn.functional.normalize(torch.cat(ref), dim=-1)
    core = ov.Core()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        with open(path, "wb") as fh:
            fh.write(module.onnx_bytes)
        base = core.read_model(path)

    def settings_for(precision: str) -> dict:
        return {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": 2, "NUM_STREAMS": args.streams,
                "PERFORMANCE_HINT": "THROUGHPUT" if args.streams > 1 else "LATENCY"}

    def split_run(requests_for, feeds) -> np.ndarray:
        parts = split_rows(feeds, args.streams)
        reqs = requests_for(next(iter(parts[0].values())).shape)[: len(parts)]
        for r, p in zip(reqs, parts, strict=True):
            r.start_async(p)
        for r in reqs:
            r.wait()
        return np.concatenate([r.get_output_tensor(0).data.copy() for r in reqs])

    rows = {"runtime": lambda: [module.run(**f).numpy() for f in batches]}
    for precision in ("f32", "bf16"):
        cm = core.compile_model(base, "CPU", settings_for(precision))
        dyn = [cm.create_infer_request() for _ in range(args.streams)]
        rows[f"dynamic {precision}"] = lambda dyn=dyn: [split_run(lambda s: dyn, f) for f in batches]
        for what, rows_static in (("static", True), ("length-static", False)):
            if what == "length-static" and precision == "f32":
                continue
            compiled: dict[tuple, list] = {}
            start = time.perf_counter()
            for feeds in batches:
                for part in split_rows(feeds, args.streams):
                    shape = next(iter(part.values())).shape
                    key = shape if rows_static else shape[1:]
                    if key not in compiled:
                        model = base.clone()
                        dims = list(shape) if rows_static else [-1, shape[1]]
                        model.reshape({p.get_any_name(): dims for p in model.inputs})
                        c = core.compile_model(model, "CPU", settings_for(precision))
                        compiled[key] = [c.create_infer_request() for _ in range(args.streams)]
            print(f"{what} {precision}: {len(compiled)} compiles in {time.perf_counter() - start:.1f} s")
            pick = compiled.__getitem__ if rows_static else (lambda shape, compiled=compiled: compiled[shape[1:]])
            rows[f"{what} {precision}"] = lambda pick=pick: [split_run(pick, f) for f in batches]

    for name, run in rows.items():
        emb = torch.cat([mean_pool(torch.from_numpy(o).float(), torch.from_numpy(f["attention_mask"]))
                         for o, f in zip(run(), batches, strict=True)])
        cos = (torch.nn.functional.normalize(emb, dim=-1) * ref).sum(-1)
        print(f"{name:19s} cosine to fp32 {cos.mean():.4f} / {cos.min():.4f}")
    times: dict[str, list[float]] = {name: [] for name in rows}
    for r in range(args.rounds):
        names = list(rows)[r % len(rows):] + list(rows)[: r % len(rows)]  # the order rotates
        for name in names:
            t = time.perf_counter()
            rows[name]()
            times[name].append(time.perf_counter() - t)
    for name in rows:
        pairs = [b / t for b, t in zip(times["runtime"], times[name], strict=True)]
        print(f"{name:19s} {statistics.median(times[name]) * 1e3:6.1f} ms a pass, {statistics.median(pairs):.3f}x "
              f"the runtime's (pairs {min(pairs):.2f}-{max(pairs):.2f})")


if __name__ == "__main__":
    main()
