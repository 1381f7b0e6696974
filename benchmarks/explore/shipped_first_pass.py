"""Experiment (issue 27): what a shipped minilm folder's first ``encode`` of the 512 held-out pydoc
sentences costs against the next ones, and when a ``static-shapes`` plan compiles its batch shapes:
a few hundred sentences encoded once do not pay for a compile, a long corpus in one call does, and
``settle`` (a server after its warm-up call) compiles every shape met.

    HF_HUB_OFFLINE=1 ACCELKIT_THREADS=2 .venv/bin/python benchmarks/explore/shipped_first_pass.py out/opt-minilm-static/model [--corpus 200]

Each row is a fresh load of the folder, so the compiles of one do not serve the next.
"""

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import accelkit  # noqa: E402
from accelkit.workloads import get_workload  # noqa: E402


def compiled(model) -> str:
    extra = model.model.describe().extra
    return f"{extra.get('static_shapes_compiled', 0)} shapes compiled in {extra.get('static_compile_s', 0.0):.2f} s"


def timed(what: str, fn) -> None:
    start = time.perf_counter()
    fn()
    print(f"  {what}: {time.perf_counter() - start:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", help="a shipped folder (accelkit optimize's model/)")
    parser.add_argument("--corpus", type=int, default=200, help="the long corpus: the sentences this many times over")
    args = parser.parse_args()
    texts = list(get_workload("minilm").eval_data())
    print(f"{len(texts)} sentences, encoded three times in one process:")
    model = accelkit.load(args.model)
    for name in ("first", "second", "third"):
        timed(f"{name} encode", lambda: model.encode(texts))
    print(f"  {compiled(model)}")
    print("then a warm-up encode, settle, and an encode:")
    model = accelkit.load(args.model)
    timed("warm-up encode", lambda: model.encode(texts))
    timed("settle", model.settle)
    timed("encode", lambda: model.encode(texts))
    print(f"  {compiled(model)}")
    corpus = texts * args.corpus
    print(f"{len(corpus)} sentences in one call (a fresh load), shapes compiled as they pay:")
    model = accelkit.load(args.model)
    timed("encode", lambda: model.encode(corpus))
    print(f"  {compiled(model)}")
    print(f"{len(corpus)} sentences in one call after every shape is compiled (a fresh load):")
    model = accelkit.load(args.model)
    timed("warm-up encode, settle", lambda: (model.encode(texts), model.settle()))
    timed("encode", lambda: model.encode(corpus))


if __name__ == "__main__":
    main()
