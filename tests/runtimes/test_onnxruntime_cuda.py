"""ONNX Runtime on CUDA: the onnx technique on a cuda device gets the CUDA provider's runtime,
whose outputs match the CPU session's (skipped where there is no CUDA onnxruntime)."""

from __future__ import annotations

import pytest
import torch

from accelkit.runtimes.onnxruntime_cuda import OrtCudaModule

REASON = OrtCudaModule.unavailable_reason()
X = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def test_without_cuda_the_onnx_technique_says_why(digits_workload, digits_model):
    if REASON is None:
        pytest.skip("CUDA onnxruntime is present here")
    from accelkit.errors import DeviceUnavailableError
    from accelkit.runtimes.registry import runtime_serving

    with pytest.raises(DeviceUnavailableError, match="onnxruntime-cuda"):
        runtime_serving("onnxruntime", "cuda")


@pytest.mark.gpu
@pytest.mark.skipif(REASON is not None, reason=f"ONNX Runtime on CUDA unavailable: {REASON}")
def test_onnx_on_cuda_runs_on_the_cuda_provider(digits_workload, digits_model, tmp_path):
    from accelkit.runtimes import get_runtime
    from accelkit.variants import build_variant
    from accelkit.workloads.base import RunSettings

    built = build_variant("onnx", digits_model, RunSettings(batch_size=8, device="cuda"), digits_workload)
    session = built.model
    assert isinstance(session, OrtCudaModule) and built.details["device"] == "cuda"
    assert "CUDAExecutionProvider" in session.session.get_providers()
    out = session(X.cuda())
    assert out.device.type == "cuda"
    with torch.no_grad():
        torch.testing.assert_close(out.cpu(), digits_model(X), rtol=1e-3, atol=1e-3)
    fields = session.save(tmp_path)
    again = get_runtime(fields["runtime"]).load(tmp_path, fields)
    assert isinstance(again, OrtCudaModule)
    torch.testing.assert_close(again(X), out)
