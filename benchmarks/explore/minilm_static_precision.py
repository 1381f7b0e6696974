"""Experiment (issue 27): a shipped ``openvino-int8+static-shapes`` minilm folder with its float parts
in bf16 (as built on a native-bf16 CPU) and in f32: how far a one-off ``encode`` (served by the
dynamic compile) is from the settled one (a compile per shape), the cosine of each to the fp32
model (mean / worst sentence) on the 512 held-out pydoc sentences and on the package-README set,
and the settled speed of each, interleaved rounds at 2 threads.

    HF_HUB_OFFLINE=1 ACCELKIT_THREADS=2 .venv/bin/python benchmarks/explore/minilm_static_precision.py out/opt-minilm-static/model [--text out/data/package_readme_sentences.txt] [--rounds 7]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402

import accelkit  # noqa: E402
from accelkit.runtimes.openvino import OpenVinoConfig, OpenVinoModule  # noqa: E402
from accelkit.workloads import get_workload  # noqa: E402


def cosines(a: np.ndarray, b: torch.Tensor) -> str:
    c = torch.nn.functional.cosine_similarity(torch.from_numpy(a), b)
    return f"{c.mean():.4f} / {c.min():.4f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--text", default=None)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    wl = get_workload("minilm")
    sets = {"pydoc": list(wl.eval_data())}
    if args.text:
        with open(args.text) as fh:
            sets["readmes"] = [line.strip() for line in fh if line.strip()]
    fp32 = wl.build_model()
    refs = {name: wl.predict(fp32, texts, wl.default_settings(32)) for name, texts in sets.items()}
    shipped = accelkit.load(args.model)
    onnx_bytes, config = shipped.model.onnx_bytes, shipped.model.config.to_dict()
    folders = {}
    for precision in ("bf16", "f32"):
        folder = accelkit.load(args.model)
        for name, texts in sets.items():
            # a fresh module for each set: the dynamic compile serves its first encode
            folder.model = OpenVinoModule(onnx_bytes, OpenVinoConfig.from_dict({**config, "precision": precision}))
            once = folder.encode(texts)
            folder.settle()
            settled = folder.encode(texts)
            print(f"{precision} {name}: one-off {cosines(once, refs[name])}, settled {cosines(settled, refs[name])}, "
                  f"largest difference {float(np.abs(once - settled).max()):.2e}")
        folder.encode(sets["pydoc"])
        folders[precision] = folder
    texts = sets["pydoc"]
    times: dict[str, list[float]] = {k: [] for k in folders}
    for _ in range(args.rounds):
        for name, folder in folders.items():
            start = time.perf_counter()
            folder.encode(texts)
            times[name].append(time.perf_counter() - start)
    pairs = [b / f for b, f in zip(times["bf16"], times["f32"], strict=True)]
    for name, t in times.items():
        print(f"settled {name}: {len(texts) / statistics.median(t):.1f} sentences/s")
    print(f"f32 against bf16: {statistics.median(pairs):.3f}x (pairs {min(pairs):.2f}-{max(pairs):.2f})")


if __name__ == "__main__":
    main()
