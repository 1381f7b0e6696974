"""Experiment (issue 15, not kept): NNCF's accuracy control as the way out when ``openvino-int8``
misses a tight budget on minilm. NNCF quantizes the exported graph (transformer preset, 256
one-sentence calibration samples), then reverts the quantizer groups that cost most to float,
ranked and scored by each sample's embedding cosine to the float model, until the mean drop is
within ``--max-drop`` (0.0012: a --max-quality-drop of 0.003 at the build's 0.4 share) or 16 groups
are back. Prints NNCF's own drop before and after, and the drop of both graphs served as accelkit
serves them (OpenVINO, two streams, batches of 32 padded to their longest sentence).

    HF_HUB_OFFLINE=1 .venv-peers/bin/python benchmarks/explore/nncf_accuracy_control.py
"""

import argparse
import os

os.environ.setdefault("ACCELKIT_THREADS", "2")

import nncf  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters  # noqa: E402

from accelkit.export.onnx import export_onnx, named_numpy_inputs  # noqa: E402
from accelkit.techniques.openvino_runtime import OpenVinoConfig, OpenVinoModule, quantize_onnx_nncf  # noqa: E402
from accelkit.workloads import get_workload  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--max-drop", type=float, default=0.0012)
args = parser.parse_args()
torch.set_num_threads(2)
wl = get_workload("minilm")
model = wl.build_model()
settings = wl.default_settings(32).with_(autocast=None)
calib = wl.calib_data(256)
inputs = [x for x, _ in wl.batches(calib, settings.with_(batch_size=1))]
samples = [named_numpy_inputs(x) for x in inputs]
graph = export_onnx(model, wl.example_inputs(calib[:32], settings))
with torch.inference_mode():
    refs = [wl.forward(model, x).float().flatten() for x in inputs]
reference = wl.predict(model, calib, settings)


def score(candidate: bytes, indices) -> list[float]:
    m = OpenVinoModule(candidate, OpenVinoConfig(precision="bf16", streams=1))
    with torch.inference_mode():
        return [float(torch.nn.functional.cosine_similarity(wl.forward(m, inputs[i]).float().flatten(), refs[i],
                                                            dim=0)) for i in indices]


def served_drop(candidate: bytes) -> float:
    out = wl.predict(OpenVinoModule(candidate, OpenVinoConfig(precision="bf16")), calib, settings)
    return 1.0 - wl.quality(out, reference, calib)["cosine_mean"]


def quantizers(candidate: bytes) -> int:
    return sum(n.op_type == "QuantizeLinear" for n in onnx.load_from_string(candidate).graph.node)


def validate(m: onnx.ModelProto, items) -> tuple[float, list[float]]:
    values = score(m.SerializeToString(), [int(i) for i in items])
    return float(np.mean(values)), values


plain = quantize_onnx_nncf(graph, samples)
every = list(range(len(samples)))
print(f"plain int8: NNCF's drop {1 - np.mean(score(plain, every)):.5f}, served drop {served_drop(plain):.5f}, "
      f"{quantizers(plain)} quantizers")
aware = nncf.quantize_with_accuracy_control(
    onnx.load_from_string(graph), nncf.Dataset(samples), nncf.Dataset(every), validate, max_drop=args.max_drop,
    model_type=nncf.ModelType.TRANSFORMER, subset_size=len(samples),
    advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
        max_num_iterations=16, ranking_subset_size=64, num_ranking_workers=1)).SerializeToString()
print(f"accuracy control: NNCF's drop {1 - np.mean(score(aware, every)):.5f}, served drop {served_drop(aware):.5f}, "
      f"{quantizers(aware)} quantizers")
