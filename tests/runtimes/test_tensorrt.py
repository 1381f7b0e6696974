"""TensorRT engines from an ONNX graph: built where CUDA and TensorRT are, a one-line
DeviceUnavailableError naming the fallback elsewhere."""

from __future__ import annotations

import pytest
import torch

from accelkit.errors import DeviceUnavailableError
from accelkit.export.onnx import export_onnx
from accelkit.runtimes.tensorrt import build_tensorrt_engine, tensorrt_unavailable_reason


@pytest.fixture(scope="module")
def digits_onnx(digits_model):
    return export_onnx(digits_model, torch.rand(2, 1, 8, 8))


@pytest.mark.skipif(tensorrt_unavailable_reason() is not None, reason=str(tensorrt_unavailable_reason()))
def test_tensorrt_engine_builds(digits_onnx):  # pragma: no cover - needs CUDA + TensorRT
    assert len(build_tensorrt_engine(digits_onnx)) > 0


@pytest.mark.skipif(tensorrt_unavailable_reason() is None, reason="TensorRT is available here")
def test_tensorrt_without_cuda_raises_device_unavailable(digits_onnx):
    with pytest.raises(DeviceUnavailableError, match="ONNX Runtime"):
        build_tensorrt_engine(digits_onnx)
