"""What the minilm OpenVINO int8 experiments share: the workload, its model, batch settings, an
export example, NNCF's calibration samples (one unpadded sentence each) and the int8 request that
`openvino-int8` builds (one request, 2 threads, bf16 for what stays float)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402

from accelkit.export.onnx import named_numpy_inputs  # noqa: E402
from accelkit.runtimes.openvino import OpenVinoConfig, OpenVinoModule  # noqa: E402
from accelkit.techniques.openvino_runtime import quantize_onnx_nncf  # noqa: E402
from accelkit.workloads import get_workload  # noqa: E402


@dataclass
class MinilmInt8:
    wl: Any
    model: torch.nn.Module
    settings: Any
    example: Any
    samples: list[dict]

    def feeds(self, batch: int | None = None) -> list[dict]:
        """The held-out sentences as length-sorted numpy batches (each padded to its longest)."""
        s = self.settings if batch is None else self.settings.with_(batch_size=batch)
        return [named_numpy_inputs(inputs) for inputs, _ in self.wl.batches(self.wl.eval_data(), s)]

    def int8_request(self, graph: bytes) -> Any:
        """``graph`` (ONNX bytes) through NNCF int8 on the samples, as one OpenVINO infer request."""
        module = OpenVinoModule(quantize_onnx_nncf(graph, self.samples), OpenVinoConfig(precision="bf16", streams=1))
        return module._requests[0]


def minilm_int8(batch: int = 32) -> MinilmInt8:
    torch.set_num_threads(2)
    wl = get_workload("minilm")
    s = wl.default_settings().with_(batch_size=batch)
    samples = [named_numpy_inputs(inputs) for inputs, _ in wl.batches(wl.calib_data(256), s.with_(batch_size=1))]
    return MinilmInt8(wl, wl.build_model().eval(), s, wl.example_inputs(wl.calib_data(64), s), samples)
