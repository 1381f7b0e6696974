"""ONNX Runtime on an NVIDIA GPU: the same sessions as ``OrtModule`` with the CUDA execution
provider (TensorRT's first, where onnxruntime-gpu has it); ops CUDA lacks fall back to the CPU.

Needs ``pip install onnxruntime-gpu`` and a CUDA device; absent either, the onnx techniques on a
cuda device are refused with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence

from accelkit.runtimes.onnxruntime import OrtModule
from accelkit.runtimes.registry import register_runtime

__all__ = ["OrtCudaModule"]


@register_runtime
class OrtCudaModule(OrtModule):
    """An ONNX Runtime session on the CUDA execution provider; outputs on the session's device."""

    name = "onnxruntime-cuda"
    devices = ("cuda",)
    providers = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")

    @classmethod
    def unavailable_reason(cls) -> str | None:
        import torch

        reason = super().unavailable_reason()
        if reason:
            return reason
        if not torch.cuda.is_available():
            return "no CUDA device here"
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return "this onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu)"
        return None

    def session_providers(self) -> Sequence[str]:
        import onnxruntime as ort

        available = set(ort.get_available_providers())
        return [p for p in self.providers if p in available]
