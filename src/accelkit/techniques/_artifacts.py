"""One cache for what techniques train or calibrate (students, exit heads, routers, skip choices).

Key = the model's weights fingerprint + the config + the data, so a cache never serves an
artifact of another model or data set; entries are written to a temporary name and renamed;
an entry that fails to load is stale or corrupt and is rebuilt, never trusted and never fatal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from accelkit.workloads.base import cache_dir

__all__ = ["artifact_key", "cached_artifact", "data_fingerprint", "weights_fingerprint"]

T = TypeVar("T")
_log = logging.getLogger("accelkit.cache")


def weights_fingerprint(model: nn.Module) -> str:
    """A short hash of the model's weights (packed int8 ones dequantized)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        if isinstance(t, torch.Tensor):
            t = t.dequantize() if t.is_quantized else t
            h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def data_fingerprint(items: Iterable[Any]) -> str:
    """A short hash of a list of training or calibration items (sentences, or tensors by value)."""
    h = hashlib.sha256()
    for item in items:
        if isinstance(item, torch.Tensor):
            h.update(item.detach().cpu().contiguous().numpy().tobytes())
        else:
            h.update(repr(item).encode())
    return h.hexdigest()[:16]


def artifact_key(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _remove(path: Path) -> None:
    try:
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    except OSError:  # a read-only cache: the entry stays, we just do not use it
        pass


def cached_artifact(
    kind: str,
    name: str,
    fields: dict[str, Any],
    *,
    build: Callable[[], T],
    save: Callable[[T, Path], Any],
    load: Callable[[Path], T],
    use_cache: bool = True,
    suffix: str = "",
) -> T:
    """``load`` the entry ``cache_dir()/kind/name-<key(fields)><suffix>``, else ``build`` and ``save`` it.

    ``save(value, path)`` writes a file or a folder at ``path``; it is given a temporary path
    that is renamed into place, so a crash never leaves half an entry.
    """
    path = cache_dir() / kind / f"{name}-{artifact_key(fields)}{suffix}"
    if use_cache and path.exists():
        try:
            return load(path)
        except Exception as exc:  # stale or corrupt: rebuild rather than fail
            _log.warning("cache entry %s could not be loaded (%s: %s); rebuilding it", path, type(exc).__name__, exc)
            _remove(path)
    value = build()
    if use_cache:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            save(value, tmp)
            if path.exists():
                _remove(path)
            os.replace(tmp, path)
        except OSError as exc:  # a read-only cache costs the next run a rebuild, not this one its result
            _log.warning("could not write cache entry %s (%s)", path, exc)
            _remove(tmp)
    return value
