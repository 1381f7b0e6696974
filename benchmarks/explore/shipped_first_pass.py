"""Experiment (issue 27): what a shipped minilm folder's first ``encode`` of the 512 held-out pydoc
sentences costs against the next one (a ``static-shapes`` plan compiles each new batch shape on
the first pass), and the runtime's record of those compiles.

    HF_HUB_OFFLINE=1 ACCELKIT_THREADS=2 .venv/bin/python benchmarks/explore/shipped_first_pass.py out/opt-minilm-static/model
"""

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import accelkit  # noqa: E402
from accelkit.workloads import get_workload  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", help="a shipped folder (accelkit optimize's model/)")
    args = parser.parse_args()
    texts = list(get_workload("minilm").eval_data())
    model = accelkit.load(args.model)
    for name in ("first", "second"):
        start = time.perf_counter()
        model.encode(texts)
        print(f"{name} encode of {len(texts)} sentences: {time.perf_counter() - start:.2f} s")
    extra = model.model.describe().extra
    print(f"static shapes compiled: {extra.get('static_shapes_compiled', 0)}, "
          f"in {extra.get('static_compile_s', 0.0):.2f} s")


if __name__ == "__main__":
    main()
