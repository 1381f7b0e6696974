"""Save an accelerated model to a directory and load it back with identical outputs.

ONNX Runtime variants save their graph (``model.onnx``); PyTorch variants save their plain
tensors (``model.safetensors``) and are rebuilt by re-applying the plan to the workload's
baseline (packed int8 weights are re-derived deterministically), then the saved tensors are
loaded over it. ``plan.json`` holds the schema, plan, run settings and file checksums.
Nothing is unpickled; the directory appears complete or not at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from accelkit.errors import OutputPathError, SchemaError

__all__ = ["SCHEMA", "LoadedModel", "save", "load", "normalize_plan"]

SCHEMA = "accelkit.saved/1"
_PLAN_FILE = "plan.json"


@dataclass
class LoadedModel:
    """What ``load`` returns: the runnable model, the settings to run it with, and its provenance."""

    model: Any
    settings: Any  # accelkit.workloads.RunSettings
    plan: list[dict]
    workload: str | None
    details: dict = field(default_factory=dict)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)


def normalize_plan(plan: str | list | None) -> list[dict]:
    """A variant name ("a+b"), a list of names, or a list of {"technique", "config"} → list of dicts."""
    if plan is None:
        return []
    if isinstance(plan, str):
        return [{"technique": p.strip(), "config": {}} for p in plan.split("+") if p.strip()]
    out = []
    for step in plan:
        if isinstance(step, str):
            out.append({"technique": step, "config": {}})
        elif isinstance(step, dict) and isinstance(step.get("technique"), str):
            out.append({"technique": step["technique"], "config": dict(step.get("config") or {})})
        else:
            raise SchemaError(f"plan step {step!r}: expected a name or {{'technique': name, 'config': {{...}}}}")
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _json_safe(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _plain_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    # packed/quantized tensors (torch.qint8) cannot go to safetensors; the plan re-derives them
    out = {}
    for key, value in module.state_dict().items():
        if isinstance(value, torch.Tensor) and not value.is_quantized and value.layout == torch.strided:
            out[key] = value.detach().cpu().contiguous().clone()
    return out


def save(
    model_or_variant: Any,
    path: str | os.PathLike,
    plan: str | list | None = None,
    *,
    workload: str | None = None,
    settings: Any = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model_or_variant`` (a model, an OrtModule, or build_variant's (model, settings, dtype)) to ``path``.

    ``plan``: the variant name or plan steps that made it; ``workload``: the workload name whose
    baseline the plan applies to (needed to rebuild PyTorch variants).
    """
    from accelkit.export.onnx import OrtModule
    from accelkit.workloads.base import RunSettings

    model = model_or_variant
    if isinstance(model_or_variant, tuple):
        model = model_or_variant[0]
        if settings is None and len(model_or_variant) > 1:
            settings = model_or_variant[1]
    if workload is not None and not isinstance(workload, str):
        workload = getattr(workload, "name", None)
    settings = settings if settings is not None else RunSettings()
    target = Path(path)
    if target.exists() and not (overwrite or (target / _PLAN_FILE).exists() or not any(target.iterdir())):
        raise OutputPathError(f"{target} exists and is not an accelkit save; choose a new path or pass overwrite=True")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        meta: dict[str, Any] = {
            "schema": SCHEMA,
            "plan": normalize_plan(plan),
            "workload": workload,
            "settings": settings.to_dict(),
            "details": _json_safe(getattr(model, "accelkit_details", None) or {}),
            "torch": torch.__version__,
        }
        if isinstance(model, OrtModule):
            (tmp / "model.onnx").write_bytes(model.onnx_bytes)
            meta.update(format="onnx", ort=model.config.to_dict(), files={"model.onnx": _sha256(tmp / "model.onnx")})
        elif isinstance(model, nn.Module):
            from safetensors.torch import save_file

            if workload is None:
                meta["note"] = "no workload named: load(path, baseline=...) must be given the fp32 model"
            save_file(_plain_tensors(model), str(tmp / "model.safetensors"))
            meta.update(format="torch", files={"model.safetensors": _sha256(tmp / "model.safetensors")})
        else:
            raise SchemaError(f"cannot save a {type(model).__name__}: expected an nn.Module or an ONNX Runtime module")
        (tmp / _PLAN_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _read_meta(root: Path) -> dict:
    if not root.is_dir():
        raise SchemaError(f"{root} is not a directory; pass a directory written by accelkit.save")
    plan_file = root / _PLAN_FILE
    if not plan_file.is_file():
        raise SchemaError(f"{root} has no {_PLAN_FILE}; pass a directory written by accelkit.save")
    try:
        meta = json.loads(plan_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SchemaError(f"{plan_file} is not valid JSON ({exc}); re-save the model") from exc
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        found = meta.get("schema") if isinstance(meta, dict) else type(meta).__name__
        raise SchemaError(f"{plan_file} has schema {found!r}; expected {SCHEMA!r} (re-save with this accelkit)")
    for key, kind in (("format", str), ("plan", list), ("settings", dict), ("files", dict)):
        if not isinstance(meta.get(key), kind):
            raise SchemaError(f"{plan_file}: field {key!r} missing or not a {kind.__name__}; re-save the model")
    if meta["format"] not in ("onnx", "torch"):
        raise SchemaError(f"{plan_file}: format {meta['format']!r}; expected 'onnx' or 'torch'")
    for name, digest in meta["files"].items():
        f = root / name
        if not f.is_file():
            raise SchemaError(f"{root} lacks {name}, listed in {_PLAN_FILE}; the save is incomplete")
        if _sha256(f) != digest:
            raise SchemaError(f"{f} does not match its checksum in {_PLAN_FILE}; the file is corrupt, re-save it")
    return meta


def load(path: str | os.PathLike, *, baseline: nn.Module | None = None) -> LoadedModel:
    """Restore what ``save`` wrote. ``baseline``: the fp32 model, when the save names no workload.

    Raises SchemaError for a missing directory, a wrong schema, or files that fail their checksum.
    """
    from accelkit.workloads.base import RunSettings

    root = Path(path)
    meta = _read_meta(root)
    try:
        settings = RunSettings(**meta["settings"])
    except TypeError as exc:
        raise SchemaError(f"{root / _PLAN_FILE}: settings do not fit RunSettings ({exc})") from exc
    plan = normalize_plan(meta["plan"])
    if meta["format"] == "onnx":
        from accelkit.export.onnx import OrtConfig, OrtModule

        model: Any = OrtModule((root / "model.onnx").read_bytes(), OrtConfig.from_dict(meta.get("ort") or {}),
                               details=meta.get("details"))
        return LoadedModel(model, settings, plan, meta.get("workload"), meta.get("details") or {})

    from safetensors.torch import load_file

    from accelkit.variants import build_variant
    from accelkit.workloads import get_workload

    if meta.get("workload") is None and baseline is None:
        raise SchemaError(f"{root} names no workload; call load(path, baseline=<fp32 model>)")
    wl = get_workload(meta["workload"]) if meta.get("workload") else None
    base = baseline if baseline is not None else wl.build_model()
    if plan and wl is not None:
        start = RunSettings(batch_size=settings.batch_size, max_length=settings.max_length, device=settings.device)
        model = build_variant("+".join(s["technique"] for s in plan), base, start, wl).model
    else:
        model = base
    tensors = load_file(str(root / "model.safetensors"))
    if isinstance(model, nn.Module):
        # copy into the live parameters/buffers; load_state_dict would run quantized modules'
        # own loaders, which want the packed weights that safetensors cannot hold
        current = model.state_dict(keep_vars=True)
        unexpected = [k for k in tensors if k not in current]
        if unexpected:
            raise SchemaError(
                f"{root}: saved tensors {unexpected[:3]} do not exist in the rebuilt model; "
                "the plan or baseline differs from the one saved"
            )
        with torch.no_grad():
            for key, value in tensors.items():
                target = current[key]
                if target.shape != value.shape:
                    raise SchemaError(f"{root}: tensor {key} has shape {tuple(value.shape)}, the rebuilt model "
                                      f"{tuple(target.shape)}; the plan or baseline differs from the one saved")
                target.data.copy_(value)
    return LoadedModel(model, settings, plan, meta.get("workload"), meta.get("details") or {})
