"""Atomic safetensors caching of the small baseline models trained on first use."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from safetensors.torch import load_file, save
from torch import nn

from accelkit._atomic import atomic_write_bytes
from accelkit.workloads.base import cache_dir


def save_state_atomic(model: nn.Module, path: Path) -> None:
    """Write the model's weights to ``path`` via a temp file + rename, never half-written."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save(state))


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
