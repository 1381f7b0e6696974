"""Saving a structurally pruned model (its new layer shapes as JSON, weights as safetensors) and
rebuilding it from the unpruned architecture."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from accelkit._atomic import atomic_write_bytes
from accelkit.errors import OutputPathError, SchemaError

__all__ = ["load_pruned", "pruned_shapes", "save_pruned"]


_PLAN_FORMAT = "accelkit.pruned/1"


def pruned_shapes(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Per-layer shape attributes (channels, features, groups, attention heads): the JSON half of a pruned model."""
    shapes: dict[str, dict[str, Any]] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            shapes[name] = {"type": type(m).__name__, "in_channels": m.in_channels, "out_channels": m.out_channels, "groups": m.groups}
        elif isinstance(m, nn.Linear):
            shapes[name] = {"type": "Linear", "in_features": m.in_features, "out_features": m.out_features}
        elif isinstance(m, nn.modules.batchnorm._NormBase):
            shapes[name] = {"type": type(m).__name__, "num_features": m.num_features}
        elif isinstance(m, nn.LayerNorm):
            shapes[name] = {"type": "LayerNorm", "normalized_shape": list(m.normalized_shape)}
        elif isinstance(getattr(m, "num_attention_heads", None), int) and isinstance(getattr(m, "all_head_size", None), int):
            # BERT-style self-attention: after head pruning each layer may keep a different number of heads
            shapes[name] = {"type": "Attention", "num_attention_heads": m.num_attention_heads, "all_head_size": m.all_head_size}
    return shapes


def save_pruned(model: nn.Module, directory: str | Path, *, extra: dict | None = None) -> Path:
    """Write ``model.safetensors`` + ``pruned.json`` (layer shapes, config) into ``directory``."""
    from safetensors.torch import save as st_save

    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(f"cannot create {directory} ({exc}); choose a writable folder") from exc
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    details = getattr(model, "accelkit_details", None) or {}
    meta = {
        "format": _PLAN_FORMAT,
        "plan": [{"technique": details.get("technique", "prune-structured"), "config": details.get("config", {})}],
        "shapes": pruned_shapes(model),
        "details": {k: v for k, v in details.items() if k not in ("config",)},
        **(extra or {}),
    }
    atomic_write_bytes(directory / "model.safetensors", st_save(state))
    atomic_write_bytes(directory / "pruned.json", json.dumps(meta, indent=1).encode())
    return directory


def _set_shape_attrs(module: nn.Module, attrs: dict[str, Any]) -> None:
    for key, value in attrs.items():
        if key == "type":
            continue
        if key == "normalized_shape":
            value = tuple(value)
        setattr(module, key, value)


def load_pruned(directory: str | Path, base_model: nn.Module) -> nn.Module:
    """Rebuild a pruned model: resize ``base_model``'s layers (in place) to the saved shapes, load weights."""
    from safetensors.torch import load_file

    directory = Path(directory)
    meta_path, weights_path = directory / "pruned.json", directory / "model.safetensors"
    if not meta_path.exists() or not weights_path.exists():
        raise SchemaError(f"{directory}: expected pruned.json and model.safetensors written by save_pruned()")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != _PLAN_FORMAT:
        raise SchemaError(f"{meta_path}: format {meta.get('format')!r}, expected {_PLAN_FORMAT!r}")
    state = load_file(str(weights_path))
    modules = dict(base_model.named_modules())
    for name, attrs in meta["shapes"].items():
        if name not in modules:
            raise SchemaError(f"{meta_path}: layer {name!r} is not in the base model; load with the model it was pruned from")
        _set_shape_attrs(modules[name], attrs)
    # replace every parameter/buffer whose saved shape differs by an empty one of the saved shape
    for key, tensor in state.items():
        owner_name, _, attr = key.rpartition(".")
        owner = modules.get(owner_name)
        if owner is None:
            raise SchemaError(f"{weights_path}: tensor {key!r} has no layer in the base model")
        if attr in owner._parameters and owner._parameters[attr] is not None:
            if owner._parameters[attr].shape != tensor.shape:
                owner._parameters[attr] = nn.Parameter(torch.empty_like(tensor))
        elif attr in owner._buffers and owner._buffers[attr] is not None:
            if owner._buffers[attr].shape != tensor.shape:
                owner._buffers[attr] = torch.empty_like(tensor)
    base_model.load_state_dict(state, strict=True)
    base_model.accelkit_details = meta.get("details", {})
    return base_model.eval()
