"""Atomic safetensors caching of the small baseline models trained on first use."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from accelkit.workloads.base import cache_dir


def save_state_atomic(model: nn.Module, path: Path) -> None:
    """Write the model's weights to ``path`` via a temp file + rename, never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def cached_trained(name: str, make: Callable[[], nn.Module], train: Callable[[nn.Module], None]) -> nn.Module:
    """Load ``name`` weights from the cache, or train a fresh model once and cache it."""
    model = make()
    path = cache_dir() / "weights" / f"{name}.safetensors"
    if path.exists():
        try:
            model.load_state_dict(load_file(path))
            return model.eval()
        except Exception:  # a corrupt or stale cache entry: retrain rather than fail
            path.unlink(missing_ok=True)
    train(model)
    save_state_atomic(model, path)
    return model.eval()
