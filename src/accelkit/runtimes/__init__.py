"""Runtimes: the engines a built model runs on (eager PyTorch, ONNX Runtime, OpenVINO …), each one
module keeping the ``Runtime`` contract: called like a module, on a device, described, saved, loaded.
"""

from accelkit.runtimes.base import Runtime, RuntimeRecord, ShipError
from accelkit.runtimes.registry import (
    get_runtime,
    register_runtime,
    runtime_forms,
    runtime_of,
    runtime_serving,
)

__all__ = [
    "Runtime",
    "RuntimeRecord",
    "ShipError",
    "get_runtime",
    "register_runtime",
    "runtime_forms",
    "runtime_of",
    "runtime_serving",
]
