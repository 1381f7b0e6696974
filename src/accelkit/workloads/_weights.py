"""Atomic safetensors caching of the small baseline models trained on first use."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from safetensors.torch import load_file, save
from torch import nn

from accelkit._atomic import atomic_write_bytes
from accelkit.errors import OutputPathError
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
        except Exception as exc:  # a corrupt or stale cache entry: retrain rather than fail
            try:
                path.unlink(missing_ok=True)
            except OSError as err:  # a read-only shared cache: say so before minutes of training
                raise OutputPathError(
                    f"cached weights {path} are unreadable ({type(exc).__name__}) and cannot be removed "
                    f"({err.strerror}); delete that file or set ACCELKIT_CACHE to a folder you can write"
                ) from exc
    train(model)
    try:
        save_state_atomic(model, path)
    except OSError as exc:
        raise OutputPathError(f"cannot write trained weights to {path} ({exc.strerror}); "
                              "set ACCELKIT_CACHE to a folder you can write") from exc
    return model.eval()
