"""Experiment (issue 27, unpadding): OpenVINO's per-node counters for minilm's padded graph and for
the unpadded one of minilm_unpadded_graph.py, int8 (NNCF) and float (bf16 compute), one pass over
the 512 held-out pydoc sentences in length-sorted batches of 32 after a first pass.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/explore/minilm_unpadded_profile.py
"""

import os
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from minilm_int8_setup import minilm_int8  # noqa: E402
from minilm_unpadded_graph import Unpadded  # noqa: E402

from accelkit.export.onnx import export_onnx  # noqa: E402
from accelkit.techniques.openvino_runtime import quantize_onnx_nncf  # noqa: E402

SETTINGS = {"INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": 2, "NUM_STREAMS": 1, "PERF_COUNT": True,
            "PERFORMANCE_HINT": "LATENCY"}


def main() -> None:
    import openvino as ov

    setup = minilm_int8()
    bert, example, samples, feeds = setup.model, setup.example, setup.samples, setup.feeds()
    for name, model in (("padded", bert), ("unpadded", Unpadded(bert).eval())):
        for int8 in (True, False):
            graph = export_onnx(model, example)
            if int8:
                graph = quantize_onnx_nncf(graph, samples)
            path = os.path.join(tempfile.mkdtemp(), "model.onnx")
            with open(path, "wb") as fh:
                fh.write(graph)
            request = ov.Core().compile_model(ov.Core().read_model(path), "CPU", SETTINGS).create_infer_request()
            for f in feeds:
                request.infer(f)
            by: dict[str, float] = {}
            for f in feeds:
                request.infer(f)
                for info in request.profiling_info:
                    key = f"{info.node_type}:{info.exec_type}"
                    by[key] = by.get(key, 0.0) + info.real_time.total_seconds() * 1e3
            print(f"== {name}, {'int8' if int8 else 'float'}: {sum(by.values()):.0f} ms a pass")
            for key, ms in sorted(by.items(), key=lambda kv: -kv[1])[:8]:
                print(f"   {key:45s} {ms:7.1f} ms")


if __name__ == "__main__":
    main()
