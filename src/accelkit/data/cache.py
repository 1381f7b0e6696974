"""Dataset cache: decode/resize once into RAM or an on-disk memmap, augment from there.

It buys epochs that skip the expensive deterministic work (and, with
``precompute_epochs``, the random work too); it costs disk or RAM of N decoded
samples (x K augmented epochs) and one build pass. Entries are keyed by a
fingerprint of the sources + transform config, so stale data is never served.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from accelkit.config import Config
from accelkit.data._common import (
    DATA_FORMAT_VERSION,
    atomic_write_json,
    cache_root,
    ensure_writable_dir,
    file_lock,
    fingerprint_json,
    replace_dir,
    sha256_file,
)
from accelkit.errors import ConfigError, OutputPathError
from accelkit.outdir import make_temp_dir

__all__ = [
    "CacheConfig",
    "CachedDataset",
    "cache_info",
    "clear_cache",
    "default_cache_dir",
]

_STORES = ("ram", "disk")
_VERIFY = ("full", "size")
_FINGERPRINT_MODES = ("stat", "content")
_META = "meta.json"
_ENTRY_NAME = re.compile(r"[0-9a-f]{24}")


def default_cache_dir() -> Path:
    return cache_root() / "datasets"


@dataclass
class CacheConfig(Config):
    """How and where to cache.

    store: "ram" (a numpy array in this process) or "disk" (memmapped .npy files,
    shared by processes and runs). max_bytes: the disk cache directory's total
    size limit (least recently used entries are evicted to fit; an entry that
    alone exceeds it is refused) or the RAM entry's limit. precompute_epochs:
    K > 0 also stores K epochs of random augmentation (seed recorded); epoch e
    reads slot e mod K. key: fingerprint for datasets without ``fingerprint()``.
    """

    store: str = "disk"
    cache_dir: str | None = None
    max_bytes: int | None = None
    precompute_epochs: int = 0
    fingerprint_mode: str = "stat"
    verify: str = "full"
    key: str | None = None
    build_batch_size: int = 128
    version: int = field(default=DATA_FORMAT_VERSION)

    def __post_init__(self) -> None:
        if self.store not in _STORES:
            raise ConfigError(f"store={self.store!r}: expected one of {_STORES}")
        if self.max_bytes is not None and self.max_bytes <= 0:
            raise ConfigError(
                f"max_bytes={self.max_bytes!r}: expected a positive byte count or None"
            )
        if self.precompute_epochs < 0:
            raise ConfigError(
                f"precompute_epochs={self.precompute_epochs!r}: expected >= 0 (0 = off)"
            )
        if self.fingerprint_mode not in _FINGERPRINT_MODES:
            raise ConfigError(
                f"fingerprint_mode={self.fingerprint_mode!r}: expected one of {_FINGERPRINT_MODES}"
            )
        if self.verify not in _VERIFY:
            raise ConfigError(f"verify={self.verify!r}: expected one of {_VERIFY}")
        if self.build_batch_size < 1:
            raise ConfigError(f"build_batch_size={self.build_batch_size!r}: expected >= 1")

    def resolved_dir(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else default_cache_dir()


def _is_split_pipeline(ds: Any) -> bool:
    return all(
        hasattr(ds, a) for a in ("load_base", "augment", "finalize", "fingerprint", "base_shape")
    )


def _dataset_fingerprint(ds: Any, config: CacheConfig) -> str:
    if config.key is not None:
        return config.key
    if hasattr(ds, "fingerprint"):
        try:
            return ds.fingerprint(config.fingerprint_mode)
        except TypeError:
            return ds.fingerprint()
    raise ConfigError(
        f"{type(ds).__name__} has no fingerprint(); pass CacheConfig(key=...) naming its sources "
        "and transform (change the key whenever either changes)"
    )


# ----------------------------------------------------------------------------- on-disk entries


def _entry_bytes(entry: Path) -> int:
    return sum(p.stat().st_size for p in entry.iterdir() if p.is_file()) if entry.is_dir() else 0


def _validate_entry(entry: Path, fingerprint: str, verify: str) -> str | None:
    """None when ``entry`` is complete and intact, else the reason it is not."""
    meta_path = entry / _META
    if not meta_path.is_file():
        return "meta.json missing (partial write)"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return f"meta.json unreadable ({exc})"
    if not isinstance(meta, dict) or not isinstance(meta.get("fields", {}), dict):
        return "meta.json is not an accelkit cache record"
    if not all(isinstance(spec, dict) for spec in meta.get("fields", {}).values()):
        return "meta.json fields are not accelkit cache records"
    if meta.get("version") != DATA_FORMAT_VERSION:
        return f"format version {meta.get('version')!r} != {DATA_FORMAT_VERSION}"
    if meta.get("fingerprint") != fingerprint:
        return "fingerprint mismatch"
    for name, spec in meta.get("fields", {}).items():
        path = entry / f"{name}.npy"
        if not path.is_file():
            return f"{path.name} missing"
        if path.stat().st_size != spec["nbytes_file"]:
            return f"{path.name} has {path.stat().st_size} bytes, expected {spec['nbytes_file']}"
        if verify == "full" and sha256_file(path) != spec["sha256"]:
            return f"{path.name} checksum mismatch"
    return None


def _open_entry(entry: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    meta = json.loads((entry / _META).read_text())
    arrays = {name: np.load(entry / f"{name}.npy", mmap_mode="r") for name in meta["fields"]}
    # mtime = last use, for least-recently-used eviction; a read-only shared cache is still usable.
    with contextlib.suppress(OSError):
        os.utime(entry / _META)
    return arrays, meta


def _list_entries(cache_dir: Path) -> list[Path]:
    if not cache_dir.is_dir():
        return []
    # Only names this module writes: a shared directory's other folders are never touched.
    return sorted(p for p in cache_dir.iterdir() if p.is_dir() and _ENTRY_NAME.fullmatch(p.name))


def _evict_to_fit(cache_dir: Path, need: int, max_bytes: int, keep: Path) -> list[str]:
    """Delete least recently used entries until ``need`` more bytes fit under ``max_bytes``."""
    entries = [e for e in _list_entries(cache_dir) if e != keep]
    entries.sort(key=lambda e: (e / _META).stat().st_mtime if (e / _META).exists() else 0.0)
    total = sum(_entry_bytes(e) for e in entries)
    evicted = []
    while entries and total + need > max_bytes:
        victim = entries.pop(0)
        total -= _entry_bytes(victim)
        with file_lock(cache_dir / f"{victim.name}.lock"):
            shutil.rmtree(victim, ignore_errors=True)
        evicted.append(victim.name)
    return evicted


# ----------------------------------------------------------------------------- the wrapper


class CachedDataset(torch.utils.data.Dataset):
    """Wrap a map-style dataset; serve its expensive deterministic part from a cache.

    A dataset exposing the split pipeline (``load_base``, ``augment``,
    ``finalize``, ``fingerprint``, ``base_shape``, e.g. ImageFolderDataset) gets
    its decoded samples cached and its random augmentation applied per read —
    vectorized over a batch through ``__getitems__``. Any other map-style dataset
    is treated as deterministic: its whole ``__getitem__`` output (tuples of
    fixed-shape tensors, arrays or numbers) is cached.
    """

    def __init__(
        self, dataset: Any, config: CacheConfig | None = None, *, progress: bool = False
    ) -> None:
        self.dataset = dataset
        self.config = config or CacheConfig()
        self.split = _is_split_pipeline(dataset)
        if self.config.precompute_epochs and not self.split:
            raise ConfigError(
                f"precompute_epochs={self.config.precompute_epochs}: {type(dataset).__name__} has no "
                "separate random augmentation (load_base/augment/finalize); use precompute_epochs=0"
            )
        self.n = len(dataset)
        self.fingerprint = self._entry_fingerprint()
        self.entry: Path | None = None
        self.rebuilt_reason: str | None = None
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self.arrays, self.meta = self._load_or_build(progress)

    # -- keys and sizes

    def _entry_fingerprint(self) -> str:
        parts: dict[str, Any] = {
            "dataset": _dataset_fingerprint(self.dataset, self.config),
            "kind": "split" if self.split else "whole",
            "n": self.n,
            "version": DATA_FORMAT_VERSION,
            "precompute_epochs": self.config.precompute_epochs,
        }
        if self.config.precompute_epochs:
            parts["augment"] = self.dataset.augment_fingerprint()
        return fingerprint_json(parts)

    def _field_specs(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        if self.split:
            c, h, w = self.dataset.base_shape
            specs: dict[str, tuple[tuple[int, ...], np.dtype]] = {
                "label": ((self.n,), np.dtype(np.int64))
            }
            k = self.config.precompute_epochs
            if k:
                probe = self.dataset.augment(
                    torch.zeros((1, c, h, w), dtype=torch.uint8), np.array([0]), 0
                )
                specs["aug"] = ((k, self.n, *probe.shape[1:]), np.dtype(np.uint8))
            else:
                specs["base"] = ((self.n, c, h, w), np.dtype(np.uint8))
            return specs
        first = self.dataset[0]
        items = first if isinstance(first, tuple | list) else (first,)
        self._kinds = []
        specs = {}
        for j, item in enumerate(items):
            if isinstance(item, torch.Tensor):
                arr, kind = item.detach().cpu().numpy(), "tensor"
            elif isinstance(item, np.ndarray):
                arr, kind = item, "ndarray"
            elif isinstance(item, bool | int | float | np.number):
                arr, kind = np.asarray(item), "scalar"
            else:
                raise ConfigError(
                    f"item field {j} of {type(self.dataset).__name__} is {type(item).__name__}; "
                    "CachedDataset stores tensors, arrays and numbers only"
                )
            self._kinds.append(kind)
            specs[f"f{j}"] = ((self.n, *arr.shape), arr.dtype)
        self._single = not isinstance(first, tuple | list)
        return specs

    @staticmethod
    def _spec_bytes(specs: dict[str, tuple[tuple[int, ...], np.dtype]]) -> int:
        return sum(int(np.prod(shape)) * dtype.itemsize for shape, dtype in specs.values())

    # -- build

    def _fill(self, arrays: dict[str, np.ndarray], progress: bool) -> None:
        bs = self.config.build_batch_size
        n = self.n
        k = self.config.precompute_epochs
        steps = n * (1 + k) if self.split and k else n
        from rich.progress import Progress

        with Progress(disable=not progress, transient=True) as bar:
            task = bar.add_task(f"caching {n} samples", total=steps)
            if not self.split:
                for i in range(n):
                    item = self.dataset[i]
                    items = (item,) if self._single else item
                    for j, value in enumerate(items):
                        if isinstance(value, torch.Tensor):
                            value = value.detach().cpu().numpy()
                        arrays[f"f{j}"][i] = value
                    bar.advance(task)
                return
            base = (
                arrays["base"]
                if "base" in arrays
                else np.empty((n, *self.dataset.base_shape), dtype=np.uint8)
            )
            for i in range(n):
                base[i], arrays["label"][i] = self.dataset.load_base(i)
                bar.advance(task)
            for epoch in range(k):
                for start in range(0, n, bs):
                    idx = np.arange(start, min(start + bs, n))
                    out = self.dataset.augment(torch.from_numpy(base[idx]), idx, epoch)
                    arrays["aug"][epoch, idx] = out.numpy()
                    bar.advance(task, len(idx))

    def _load_or_build(self, progress: bool) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        specs = self._field_specs()
        need = self._spec_bytes(specs)
        limit = self.config.max_bytes
        if limit is not None and need > limit:
            raise ConfigError(
                f"cache entry needs {need / 2**20:.1f} MiB but max_bytes={limit} ({limit / 2**20:.1f} MiB); "
                "raise max_bytes, lower precompute_epochs, or use a smaller resize"
            )
        meta = {
            "version": DATA_FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "n": self.n,
            "dataset": type(self.dataset).__name__,
            "precompute_epochs": self.config.precompute_epochs,
            "augment": self.dataset.config.random_part()
            if self.config.precompute_epochs and hasattr(self.dataset, "config")
            else None,
            "created_unix": time.time(),
        }
        if self.config.store == "ram":
            arrays = {name: np.empty(shape, dtype) for name, (shape, dtype) in specs.items()}
            self._fill(arrays, progress)
            meta["fields"] = {n: {"shape": list(s), "dtype": str(d)} for n, (s, d) in specs.items()}
            return arrays, meta
        return self._load_or_build_disk(specs, need, meta, progress)

    def _load_or_build_disk(
        self, specs: dict[str, Any], need: int, meta: dict[str, Any], progress: bool
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        cache_dir = self.config.resolved_dir()
        name = self.fingerprint[:24]
        entry = cache_dir / name
        self.entry = entry
        if entry.is_dir() and _validate_entry(entry, self.fingerprint, self.config.verify) is None:
            return _open_entry(entry)
        ensure_writable_dir(cache_dir)
        with file_lock(cache_dir / f"{name}.lock"):
            # Another process may have finished the same entry while we waited for the lock.
            reason = (
                _validate_entry(entry, self.fingerprint, self.config.verify)
                if entry.exists()
                else None
            )
            if entry.exists() and reason is None:
                return _open_entry(entry)
            if reason is not None:
                warnings.warn(
                    f"dataset cache {str(entry)!r} is invalid ({reason}); rebuilding it",
                    UserWarning,
                    stacklevel=4,
                )
                self.rebuilt_reason = reason
                shutil.rmtree(entry, ignore_errors=True)
            if self.config.max_bytes is not None:
                _evict_to_fit(cache_dir, need, self.config.max_bytes, keep=entry)
            # 1% + 1 MiB headroom for .npy headers and meta.json.
            ensure_writable_dir(cache_dir, need_bytes=int(need * 1.01) + 2**20)
            tmp = make_temp_dir(cache_dir, prefix=f".{name}.tmp-")  # umask, not 0700: caches are shared
            try:
                arrays = {
                    fname: np.lib.format.open_memmap(
                        tmp / f"{fname}.npy", mode="w+", dtype=dtype, shape=shape
                    )
                    for fname, (shape, dtype) in specs.items()
                }
                self._fill(arrays, progress)
                fields = {}
                for arr in arrays.values():
                    arr.flush()
                for fname, (shape, dtype) in specs.items():
                    path = tmp / f"{fname}.npy"
                    with open(path, "rb+") as fh:
                        os.fsync(fh.fileno())
                    fields[fname] = {
                        "shape": list(shape),
                        "dtype": str(dtype),
                        "nbytes_file": path.stat().st_size,
                        "sha256": sha256_file(path),
                    }
                arrays.clear()
                meta["fields"] = fields
                atomic_write_json(tmp / _META, meta)
                replace_dir(tmp, entry)
            except OSError as exc:
                raise OutputPathError(
                    f"writing dataset cache under {str(cache_dir)!r} failed ({exc.strerror or exc}); "
                    "free space or pass another cache_dir"
                ) from exc
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
            return _open_entry(entry)

    # -- reads

    def __len__(self) -> int:
        return self.n

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation epoch; reaches DataLoader workers, persistent ones too."""
        self._epoch.fill_(int(epoch))
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def _read_split(self, idx: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        labels = np.asarray(self.arrays["label"][idx])
        k = self.config.precompute_epochs
        if k:
            x = torch.from_numpy(np.ascontiguousarray(self.arrays["aug"][self.epoch % k, idx]))
        else:
            base = torch.from_numpy(np.ascontiguousarray(self.arrays["base"][idx]))
            x = self.dataset.augment(base, idx, self.epoch)
        return self.dataset.finalize(x), labels

    def _whole_item(self, i: int) -> Any:
        out = []
        for j, kind in enumerate(self._kinds):
            value = self.arrays[f"f{j}"][i]
            if kind == "tensor":
                out.append(torch.from_numpy(np.array(value)))
            elif kind == "ndarray":
                out.append(np.array(value))
            else:
                out.append(value.item())
        return out[0] if self._single else tuple(out)

    def __getitem__(self, i: int) -> Any:
        if not self.split:
            return self._whole_item(int(i))
        x, labels = self._read_split(np.array([int(i)]))
        return x[0], int(labels[0])

    def __getitems__(self, indices: list[int]) -> list[Any]:
        """Batched read used by DataLoader: one fancy-index + one vectorized augment per batch."""
        if not self.split:
            return [self._whole_item(int(i)) for i in indices]
        idx = np.asarray(indices, dtype=np.int64)
        x, labels = self._read_split(idx)
        return [(x[j], int(labels[j])) for j in range(len(idx))]

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())

    def __getstate__(self) -> dict[str, Any]:
        # Workers reopen disk memmaps instead of pickling their contents.
        state = self.__dict__.copy()
        if self.config.store == "disk":
            state["arrays"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.arrays is None:
            assert self.entry is not None
            self.arrays = {
                name: np.load(self.entry / f"{name}.npy", mmap_mode="r")
                for name in self.meta["fields"]
            }


# ----------------------------------------------------------------------------- management


def cache_info(
    cache_dir: str | Path | None = None, *, verify: str = "size"
) -> list[dict[str, Any]]:
    """One dict per entry: name, bytes, n, precompute_epochs, augment (seed), valid, reason."""
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    rows = []
    for entry in _list_entries(root):
        row: dict[str, Any] = {"name": entry.name, "path": str(entry), "bytes": _entry_bytes(entry)}
        try:
            meta = json.loads((entry / _META).read_text())
        except (OSError, json.JSONDecodeError):
            meta = {}
        if not isinstance(meta, dict):  # e.g. meta.json = [] : report the entry as invalid, not a traceback
            meta = {}
        fp = meta.get("fingerprint", "")
        fp = fp if isinstance(fp, str) else ""
        reason = (
            _validate_entry(entry, fp, verify)
            if fp.startswith(entry.name)
            else "meta.json missing or foreign"
        )
        row.update(
            n=meta.get("n"),
            dataset=meta.get("dataset"),
            precompute_epochs=meta.get("precompute_epochs"),
            augment=meta.get("augment"),
            last_used_unix=(entry / _META).stat().st_mtime if (entry / _META).exists() else None,
            valid=reason is None,
            reason=reason,
        )
        rows.append(row)
    return rows


def clear_cache(cache_dir: str | Path | None = None, *, name: str | None = None) -> list[str]:
    """Delete every entry (or the one called ``name``) under the lock; return the names removed."""
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    removed = []
    for entry in _list_entries(root):
        if name is not None and entry.name != name:
            continue
        try:
            with file_lock(root / f"{entry.name}.lock"):
                shutil.rmtree(entry)
        except OSError as exc:  # a read-only or someone else's cache: one line, not a traceback
            raise OutputPathError(
                f"cannot clear cache entry {str(entry)!r} ({exc.strerror or exc}); the cache folder is not "
                "writable for you: ask its owner, or use --cache-dir with a folder you own"
            ) from exc
        # The lock file stays: unlinking it could let two builders lock different inodes.
        removed.append(entry.name)
    if name is not None and not removed:
        raise ConfigError(
            f"no cache entry named {name!r} under {str(root)!r}; list them with `accelkit cache info`"
        )
    return removed
