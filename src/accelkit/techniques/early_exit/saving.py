"""Saving an early-exit model (heads as safetensors, config and structure as JSON, the backbone
only when training changed it) and re-wrapping a baseline with what was saved."""

from __future__ import annotations

import json
import os
from pathlib import Path

from torch import nn

from accelkit._atomic import atomic_write_bytes
from accelkit.techniques._blocks import find_blocks
from accelkit.techniques.early_exit.config import BACKBONE_TRAINING, EarlyExitConfig
from accelkit.techniques.early_exit.heads import ExitHead
from accelkit.techniques.early_exit.model import EarlyExitModel

__all__ = ["load_early_exit", "save_early_exit"]


_FORMAT = "accelkit.early_exit/1"


def save_early_exit(model: EarlyExitModel, path: str | os.PathLike) -> Path:
    """Write the heads (safetensors) and config, thresholds, structure (JSON) to a folder.

    The backbone is written only when training changed it (``joint`` or ``staged``); otherwise
    ``load_early_exit`` re-wraps the same baseline.
    """
    from safetensors.torch import save as save_safetensors

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": _FORMAT,
        "config": {**model.config.to_dict(), "thresholds": model.thresholds, "patience": model.patience},
        "mode": model.mode,
        "block_names": model.block_names,
        "final_names": model.final_names,
        "returns_tuple": model.returns_tuple,
        "heads": [h.spec for h in model.heads],
        "details": model._details,
    }
    state = {k: v.detach().contiguous().cpu() for k, v in model.heads.state_dict().items()}
    atomic_write_bytes(folder / "heads.safetensors", save_safetensors(state))
    if model.config.training in BACKBONE_TRAINING:
        backbone = {k: v.detach().clone().contiguous().cpu() for k, v in model.backbone.state_dict().items()}
        atomic_write_bytes(folder / "backbone.safetensors", save_safetensors(backbone))
    atomic_write_bytes(folder / "early_exit.json", json.dumps(meta, indent=1, default=float).encode())
    return folder


def load_early_exit(path: str | os.PathLike, backbone: nn.Module) -> EarlyExitModel:
    """Re-wrap ``backbone`` (the same baseline) with the heads and thresholds saved at ``path``.

    A jointly trained model also carries its fine-tuned backbone weights, loaded into ``backbone``.
    """
    from safetensors.torch import load_file

    from accelkit.errors import SchemaError

    folder = Path(path)
    meta_path = folder / "early_exit.json"
    if not meta_path.exists():
        raise SchemaError(f"{meta_path} does not exist; point at a folder written by save_early_exit")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != _FORMAT:
        raise SchemaError(f"{meta_path}: format {meta.get('format')!r}, expected {_FORMAT!r}")
    config = EarlyExitConfig.from_dict(meta["config"])
    find_blocks(backbone, meta["block_names"])
    if config.training in BACKBONE_TRAINING:
        weights = folder / "backbone.safetensors"
        if not weights.exists():
            raise SchemaError(
                f"{weights} is missing: an early-exit model trained with training={config.training!r} "
                "needs its backbone weights"
            )
        backbone.load_state_dict(load_file(weights))
    heads = [
        ExitHead(s["kind"], s["feature_shape"], s["out_features"], s["pool"], s["hidden"]) for s in meta["heads"]
    ]
    model = EarlyExitModel(
        backbone, config, heads, mode=meta["mode"], block_names=meta["block_names"],
        final_names=meta["final_names"], returns_tuple=meta["returns_tuple"],
    )
    model.heads.load_state_dict(load_file(folder / "heads.safetensors"))
    model.accelkit_details = meta.get("details") or {}
    return model.eval()
