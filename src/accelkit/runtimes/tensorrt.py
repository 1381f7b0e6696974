"""TensorRT engines (fp16/int8) built from an ONNX graph, when TensorRT and CUDA are present.

Buys the fastest NVIDIA inference path; costs an engine build per GPU model and TensorRT
version, and does nothing on CPU-only machines (``tensorrt_unavailable_reason`` says why).
TensorRT itself is imported only inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from accelkit._lazy import is_available, require
from accelkit.config import Config
from accelkit.errors import ConfigError, DeviceUnavailableError

__all__ = ["TensorRTConfig", "build_tensorrt_engine", "tensorrt_unavailable_reason"]


@dataclass
class TensorRTConfig(Config):
    """``precision``: "fp16" or "int8" (int8 needs a calibrated QDQ graph, e.g. from quantize_onnx_static)."""

    precision: str = "fp16"
    workspace_mb: int = 1024
    version: int = 1

    def __post_init__(self) -> None:
        if self.precision not in ("fp16", "int8"):
            raise ConfigError(f"precision={self.precision!r}: expected 'fp16' or 'int8'")
        if self.workspace_mb < 16:
            raise ConfigError(f"workspace_mb={self.workspace_mb}: expected >= 16")


def tensorrt_unavailable_reason() -> str | None:
    """None when TensorRT can build engines here, else the reason (for skips and errors)."""
    if not torch.cuda.is_available():
        return "TensorRT needs CUDA; this machine has no CUDA device"
    if not is_available("tensorrt"):
        return "TensorRT is not installed (pip install 'accelkit[tensorrt]')"
    return None


def build_tensorrt_engine(onnx_bytes: bytes, config: TensorRTConfig | None = None) -> bytes:
    """Serialized TensorRT engine for the ONNX graph; raises DeviceUnavailableError without CUDA/TensorRT."""
    config = config or TensorRTConfig()
    reason = tensorrt_unavailable_reason()
    if reason:
        raise DeviceUnavailableError(f"{reason}; use the ONNX Runtime variants (onnx, int8-aware) on this machine")
    trt = require("tensorrt", "tensorrt")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ConfigError(f"TensorRT could not parse the ONNX graph: {errors}")
    cfg = builder.create_builder_config()
    cfg.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_mb << 20)
    cfg.set_flag(trt.BuilderFlag.FP16 if config.precision == "fp16" else trt.BuilderFlag.INT8)
    engine = builder.build_serialized_network(network, cfg)
    if engine is None:
        raise ConfigError("TensorRT engine build failed; see the TensorRT log above")
    return bytes(engine)
