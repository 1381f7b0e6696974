"""accelkit: classic acceleration techniques for PyTorch, each measured beside its baseline.

Importing accelkit is cheap: it initialises no CUDA and imports neither
transformers nor onnxruntime; those load when a workload or technique needs them.
"""

from accelkit.errors import AccelkitError

__version__ = "0.1.0"

__all__ = ["AccelkitError", "__version__"]


def __getattr__(name: str):  # lazy: accelkit.save / accelkit.load import torch only when used
    if name in ("save", "load"):
        from accelkit import saving

        return getattr(saving, name)
    if name == "run_batch":
        from accelkit.batch_run import run_batch

        return run_batch
    raise AttributeError(f"module 'accelkit' has no attribute {name!r}")
