"""Helpers shared by the data modules: cache root, atomic writes, file lock, hashing."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from accelkit._atomic import atomic_write_bytes
from accelkit.errors import OutputPathError

# Bumped whenever an on-disk layout written by accelkit.data changes: every
# cache from another version is then rebuilt, never reused.
DATA_FORMAT_VERSION = 1


def cache_root() -> Path:
    """Where accelkit keeps generated data: $ACCELKIT_CACHE or ~/.cache/accelkit."""
    env = os.environ.get("ACCELKIT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "accelkit"


def ensure_writable_dir(path: Path, *, need_bytes: int = 0) -> None:
    """Create ``path`` and check it is writable with ``need_bytes`` free, before any work.

    Raises OutputPathError naming the directory and the fix, so a read-only or
    full cache directory is reported up front instead of after minutes of decoding.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-"):
            pass
    except OSError as exc:
        raise OutputPathError(
            f"cache directory {str(path)!r} is not writable ({exc.strerror or exc}); "
            "pass a writable --cache-dir or set ACCELKIT_CACHE"
        ) from exc
    if need_bytes:
        free = shutil.disk_usage(path).free
        if free < need_bytes:
            raise OutputPathError(
                f"cache directory {str(path)!r} has {free / 2**20:.1f} MiB free but the cache needs "
                f"{need_bytes / 2**20:.1f} MiB; free space there or pass another --cache-dir"
            )



def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True).encode())


def replace_dir(tmp_dir: Path, final_dir: Path) -> bool:
    """Move a fully written ``tmp_dir`` to ``final_dir``; False when another writer won.

    Renaming a directory onto an existing non-empty one fails, so the first
    complete copy stays and the loser's copy is removed.
    """
    try:
        os.replace(tmp_dir, final_dir)
        return True
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        shutil.rmtree(tmp_dir, ignore_errors=True)
        return False


@contextlib.contextmanager
def file_lock(lock_path: Path, *, timeout_s: float = 600.0) -> Iterator[None]:
    """Exclusive advisory lock (flock) so two processes never build the same entry at once."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(lock_path, "a+")  # noqa: SIM115 - closed in finally
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise OutputPathError(
                        f"lock {str(lock_path)!r} held for over {timeout_s:.0f} s by another process; "
                        "wait for it or delete the lock file if that process is gone"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fingerprint_json(obj: Any) -> str:
    """Stable sha256 of a JSON-able object (sorted keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def hash_uniform(seed: int, epoch: int, indices: np.ndarray, stream: int) -> np.ndarray:
    """Uniform floats in [0, 1), one per index, a pure function of (seed, epoch, index, stream).

    A counter-based generator (splitmix64 finalizer): vectorized, identical in
    any worker process and in any batch grouping, so the random augmentation of
    sample i at epoch e is the same whether computed on the fly, batched, or
    precomputed into a cache.
    """
    with np.errstate(over="ignore"):
        x = indices.astype(np.uint64)
        key = (
            seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + stream * 0x94D049BB133111EB
        ) & (2**64 - 1)
        x = x * np.uint64(0x9E3779B97F4A7C15) + np.uint64(key)
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)
