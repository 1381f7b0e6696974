"""Atomic training checkpoints: weights in safetensors, the rest as plain state beside them.

Buys: a run killed at any moment resumes exactly from its last checkpoint, and a file
from another model is refused before anything is loaded. Costs: one folder write per save.

Layout of ``<dir>/step-00000012/``: ``model.safetensors`` (weights; tied tensors stored once
and named in the metadata), ``train_state.pt`` (optimizer, GradScaler, RNG, sampler state:
plain tensors/numbers, read with ``torch.load(weights_only=True)``), ``meta.json``. The folder
is written under a temporary name and renamed, then ``latest.json`` is replaced atomically.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from accelkit._atomic import atomic_write_bytes
from accelkit.errors import AccelkitError, OutputPathError

__all__ = [
    "CheckpointError",
    "latest_checkpoint",
    "load_checkpoint",
    "load_weights",
    "model_fingerprint",
    "save_checkpoint",
    "save_weights",
]

FORMAT_VERSION = 1
_STEP_DIR = re.compile(r"^step-(\d{8})$")


class CheckpointError(AccelkitError):
    """A checkpoint is missing, truncated, or does not match the model it is loaded into."""


def _atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


# --- weights ---------------------------------------------------------------------------------
def _dedupe_shared(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """safetensors refuses tensors sharing storage (tied embeddings): keep the first name,
    record the others as aliases."""
    kept: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[int, int, tuple[int, ...]], str] = {}
    for name, tensor in state.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if tensor.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        kept[name] = tensor.detach().to("cpu").contiguous()
    return kept, aliases


def save_weights(state: Mapping[str, torch.Tensor], path: str | os.PathLike[str]) -> None:
    """Write a state dict to ``path`` as safetensors, atomically (temp file + os.replace)."""
    from safetensors.torch import save

    kept, aliases = _dedupe_shared(state)
    data = save(kept, metadata={"accelkit_aliases": json.dumps(aliases), "format": "pt"})
    atomic_write_bytes(Path(path), data)


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            aliases = json.loads((fh.metadata() or {}).get("accelkit_aliases", "{}"))
            tensors = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118
    except FileNotFoundError as exc:
        raise CheckpointError(f"no weights file at {path}; point to a checkpoint folder written by accelkit") from exc
    except Exception as exc:  # safetensors raises SafetensorError (not exported stably) on truncation
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc}); it is truncated or corrupt, use an earlier checkpoint") from exc
    for alias, target in aliases.items():
        tensors[alias] = tensors[target]
    return tensors


def _check_matches(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], source: Path) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong_shape = [
        f"{k} {tuple(found[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in found and tuple(found[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if wrong_shape:
            parts.append(f"shape mismatches {wrong_shape[:5]}{' ...' if len(wrong_shape) > 5 else ''}")
        raise CheckpointError(
            f"{source} was written for another model: {'; '.join(parts)}; load it into the model that wrote it"
        )


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load safetensors weights into ``model`` only after every key and shape matched."""
    path = Path(path)
    tensors = _read_weights(path)
    expected = model.state_dict()
    _check_matches(expected, tensors, path)
    model.load_state_dict(tensors, strict=True)


def model_fingerprint(model: nn.Module) -> dict[str, Any]:
    """What identifies the model a checkpoint belongs to: its architecture (the module's class, and a
    Hugging Face config's ``architectures`` when it has one) and a hash of every parameter and
    buffer's name and shape (not dtype: a bf16-weights run resumes as itself)."""
    import hashlib

    inner = getattr(model, "_orig_mod", model)  # torch.compile's wrapper
    hf_config = getattr(inner, "config", None) or getattr(getattr(inner, "model", None), "config", None)
    architecture = type(inner).__name__
    if hf_config is not None and getattr(hf_config, "architectures", None):
        architecture += "(" + ",".join(map(str, hf_config.architectures)) + ")"
    elif hf_config is not None and getattr(hf_config, "model_type", None):
        architecture += f"({hf_config.model_type})"
    shapes = sorted((name, tuple(t.shape)) for name, t in inner.state_dict().items())
    digest = hashlib.sha256(repr(shapes).encode()).hexdigest()[:16]
    return {"architecture": architecture, "tensors": len(shapes), "shapes_sha256": digest}


def _describe(fingerprint: dict[str, Any]) -> str:
    return f"{fingerprint.get('architecture')}, {fingerprint.get('tensors')} tensors, shapes {fingerprint.get('shapes_sha256')}"


# --- whole checkpoints -----------------------------------------------------------------------
def latest_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    """The folder ``latest.json`` in ``directory`` points to, or None when there is none yet."""
    pointer = Path(directory) / "latest.json"
    if not pointer.exists():
        return None
    try:
        doc = json.loads(pointer.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{pointer} is unreadable ({exc}); delete it to start over or fix the folder name") from exc
    name = doc.get("dir") if isinstance(doc, dict) else None
    if not isinstance(name, str):
        raise CheckpointError(f"{pointer} holds {doc!r:.60}, not {{\"dir\": \"step-XXXXXXXX\", ...}}; "
                              "delete it to start over or fix the folder name")
    # only a step folder directly inside the checkpoint folder: never a path the file names elsewhere
    if not _STEP_DIR.match(name):
        raise CheckpointError(f"{pointer} points to {name!r}, not a step-XXXXXXXX folder inside {directory}; "
                              "delete latest.json to start over")
    path = Path(directory) / name
    if path.is_symlink():
        raise CheckpointError(f"{path} is a symlink; checkpoints are read only from real folders inside {directory}")
    if not path.is_dir():
        raise CheckpointError(f"{pointer} points to {path}, which does not exist; delete latest.json to start over")
    return path


def save_checkpoint(
    directory: str | os.PathLike[str],
    *,
    step: int,
    model_state: Mapping[str, torch.Tensor],
    train_state: dict[str, Any],
    meta: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write ``step-XXXXXXXX/`` under ``directory`` atomically, point latest.json at it,
    and delete all but the newest ``keep`` step folders."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(f"cannot create checkpoint folder {directory} ({exc}); pick a writable output_dir") from exc
    name = f"step-{step:08d}"
    final = directory / name
    tmp = directory / f".{name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_weights(model_state, tmp / "model.safetensors")
    tmp_state = tmp / "train_state.pt"
    torch.save(train_state, tmp_state)
    _atomic_write_json(tmp / "meta.json", {**meta, "step": step, "format_version": FORMAT_VERSION})
    if final.exists():  # the same step saved again after a resume: swap the old one out first
        trash = directory / f".{name}.old-{os.getpid()}"
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash)
    else:
        os.replace(tmp, final)
    _atomic_write_json(directory / "latest.json", {"dir": name, "step": step})
    steps = sorted(p for p in directory.iterdir() if _STEP_DIR.match(p.name))
    for old in steps[:-keep]:
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: str | os.PathLike[str], model: nn.Module | None = None, *,
                    fingerprint: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a checkpoint folder: load its weights into ``model`` (after checking every key
    and shape) and return ``(train_state, meta)``. Nothing is loaded if anything mismatches.

    ``fingerprint`` (``model_fingerprint`` of the model resumed): a checkpoint that recorded another
    model's is refused before anything is read beyond its meta.json."""
    path = Path(path)
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}/meta.json is missing or unreadable ({exc}); this is not a complete accelkit checkpoint") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {meta.get('format_version')!r}; this accelkit reads {FORMAT_VERSION}")
    saved = meta.get("model_fingerprint")
    if fingerprint is not None and isinstance(saved, dict) and saved != fingerprint:
        raise CheckpointError(f"{path} was written by another model ({_describe(saved)}) than the one resumed "
                              f"({_describe(fingerprint)}); resume with the model that wrote it, or train into a "
                              "new output folder")
    try:
        train_state = torch.load(path / "train_state.pt", map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated files give "negative seek value"/EOFError: say what it means
        raise CheckpointError(f"{path}/train_state.pt is unreadable ({exc}); it is truncated or corrupt, use an earlier checkpoint") from exc
    if model is not None:
        tensors = _read_weights(path / "model.safetensors")
        _check_matches(model.state_dict(), tensors, path / "model.safetensors")
        model.load_state_dict(tensors, strict=True)
    return train_state, meta
