"""Save an accelerated model to a directory and load it back with identical outputs.

ONNX Runtime variants save their graph (``model.onnx``); PyTorch variants save their plain
tensors (``model.safetensors``) and are rebuilt by re-applying the plan to the workload's
baseline (packed int8 weights are re-derived deterministically), then the saved tensors are
loaded over it. ``plan.json`` holds the schema, plan, run settings and file checksums.
Nothing is unpickled; the directory appears complete or not at all.

Loading trusts nothing in the folder: it imports no code a file names (only embedded workloads
are rebuilt by name; ``load(path, workload=...)`` for others), reads only files listed in
``plan.json`` that lie inside the folder, checks every checksum, and refuses unlisted model files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from torch import nn

from accelkit.errors import ConfigError, SchemaError
from accelkit.outdir import SAVED_MODEL_FILES, foreign_files, make_temp_dir, prepare_output_dir

__all__ = ["SCHEMA", "LoadedModel", "save", "load", "normalize_plan", "resolve_inside"]

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
    # packed/quantized tensors (torch.qint8, torchao's weight-only tensor subclasses) cannot go to
    # safetensors; the plan re-derives them deterministically from the saved float tensors
    out = {}
    for key, value in module.state_dict().items():
        plain = type(value) in (torch.Tensor, nn.Parameter)
        if plain and not value.is_quantized and value.layout == torch.strided:
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
    ship: bool | None = None,
) -> Path:
    """Write ``model_or_variant`` (a model, an OrtModule, a ``Built`` record, or (model, settings)) to ``path``.

    ``plan``: the variant name or plan steps that made it; ``workload``: the workload name whose
    baseline the plan applies to (needed to rebuild PyTorch variants).
    ``path`` may be an earlier save (replaced); a folder holding other files is refused with
    OutputPathError unless ``overwrite=True``, and then only accelkit's own files in it are
    replaced (see accelkit.outdir).

    ``workload`` given as the Workload object of a Hugging Face model (``--model``, minilm) makes
    the folder self-contained (``accelkit.export.artifact``): ``load`` then rebuilds nothing.
    ``ship=None`` falls back to the rebuild-by-plan save (noted in plan.json) when the model
    cannot ship that way; ``ship=True`` raises ShipError instead; ``ship=False`` never ships.
    """
    from accelkit.export.artifact import (
        ShipError,
        is_graph_module,
        runtime_fields,
        ship_files,
        ship_spec,
    )
    from accelkit.techniques.registry import Built
    from accelkit.workloads.base import RunSettings

    model = model_or_variant
    details = None
    if isinstance(model_or_variant, Built):
        model, details = model_or_variant.model, model_or_variant.details
        settings = settings if settings is not None else model_or_variant.settings
        if plan is None and model_or_variant.steps:
            plan = model_or_variant.name
    elif isinstance(model_or_variant, tuple):
        model = model_or_variant[0]
        if settings is None and len(model_or_variant) > 1:
            settings = model_or_variant[1]
    spec = None  # what a self-contained folder needs, read once from the workload
    if workload is not None and not isinstance(workload, str):
        spec = ship_spec(workload) if ship is not False else None
        workload = getattr(workload, "name", None)
    if ship and spec is None:
        raise ShipError(f"workload {workload!r} names no Hugging Face model folder; it cannot ship self-contained")
    settings = settings if settings is not None else RunSettings()
    target = Path(path)
    prepare_output_dir(target, overwrite=overwrite, owned=SAVED_MODEL_FILES, create=False)
    keep_foreign = target.is_dir() and bool(foreign_files(target, SAVED_MODEL_FILES))
    tmp = make_temp_dir(target.parent, prefix=f".{target.name}.")
    try:
        meta: dict[str, Any] = {
            "schema": SCHEMA,
            "plan": normalize_plan(plan),
            "workload": workload,
            "settings": settings.to_dict(),
            "details": _json_safe(details if details is not None else getattr(model, "accelkit_details", None) or {}),
            "torch": torch.__version__,
        }
        shipped = None
        if spec is not None:
            try:
                shipped = ship_files(model, spec, settings, tmp)
            except ShipError as exc:
                if ship:
                    raise
                for f in list(tmp.iterdir()):
                    shutil.rmtree(f) if f.is_dir() else f.unlink()
                meta["not_self_contained"] = str(exc)
        if shipped is not None:
            meta.update(shipped)
            meta["files"] = {f.relative_to(tmp).as_posix(): _sha256(f) for f in sorted(tmp.rglob("*")) if f.is_file()}
        elif is_graph_module(model):  # ONNX Runtime or OpenVINO: the graph, and the runtime's settings
            (tmp / "model.onnx").write_bytes(model.onnx_bytes)
            meta.update(format="onnx", files={"model.onnx": _sha256(tmp / "model.onnx")}, **runtime_fields(model))
        elif isinstance(model, nn.Module):
            from safetensors.torch import save_file

            if workload is None:
                meta["note"] = "no workload named: load(path, baseline=...) must be given the fp32 model"
            save_file(_plain_tensors(model), str(tmp / "model.safetensors"))
            meta.update(format="torch", files={"model.safetensors": _sha256(tmp / "model.safetensors")})
        else:
            raise SchemaError(f"cannot save a {type(model).__name__}: expected an nn.Module or an ONNX Runtime module")
        (tmp / _PLAN_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        if keep_foreign:
            _replace_owned_files(tmp, target)
        elif target.exists():
            # only accelkit's own files are in target (checked above): swap the whole folder.
            # The backup name derives from the unique temp name, so nothing of the user's is hit.
            old = tmp.with_name(tmp.name + ".old")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _replace_owned_files(tmp: Path, target: Path) -> None:
    """overwrite=True into a folder that also holds the user's files: move the new files in one by
    one, drop accelkit's stale ones, leave everything else untouched. plan.json goes last, so a
    reader sees the old checksums until every new file is in place (and then the new ones)."""
    new = {p.name for p in tmp.iterdir()}
    for name in sorted(new - {_PLAN_FILE}):
        os.replace(tmp / name, target / name)
    for name in SAVED_MODEL_FILES - new:
        stale = target / name
        if stale.is_file() and not stale.is_symlink():
            stale.unlink()
    os.replace(tmp / _PLAN_FILE, target / _PLAN_FILE)
    tmp.rmdir()


# Files a loader could be pointed at: an unlisted one in a save folder is refused rather than
# ignored, so a folder cannot carry unverified weights or graphs beside the verified ones.
_ARTIFACT_SUFFIXES = (".onnx", ".safetensors", ".pt", ".pth", ".bin", ".data", ".pb", ".json", ".pkl", ".npy")


def resolve_inside(root: Path, name: Any, source: Path) -> Path:
    """``root / name`` for a plain relative name that stays inside ``root``; SchemaError otherwise.

    Refuses absolute paths, ``..``, and symlinks (which could point anywhere). ``source``: the
    file that named it, for the message. Every loader that follows a name from a file uses this."""
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        raise SchemaError(f"{source}: file name {name!r} is not a plain relative name; re-save the model")
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts or os.path.isabs(name):
        raise SchemaError(f"{source}: file {name!r} points outside {root}; a saved model only reads its own files")
    path = root / rel
    resolved_root = root.resolve()
    for part in [path, *path.parents]:
        if part == root:
            break
        if part.is_symlink():
            raise SchemaError(f"{source}: {part} is a symlink; a saved model only reads plain files in its folder")
    if not path.resolve().is_relative_to(resolved_root):
        raise SchemaError(f"{source}: file {name!r} points outside {root}; a saved model only reads its own files")
    return path


# onnx / torch: rebuilt on the workload's baseline; hf-onnx / hf-torch: self-contained (export.artifact)
_FORMATS = ("onnx", "torch", "hf-onnx", "hf-torch")


def _read_meta(root: Path) -> dict:
    if not root.is_dir():
        raise SchemaError(f"{root} is not a directory; pass a directory written by accelkit.save")
    plan_file = root / _PLAN_FILE
    if plan_file.is_symlink() or not plan_file.is_file():
        raise SchemaError(f"{root} has no {_PLAN_FILE} (a plain file); pass a directory written by accelkit.save")
    try:
        meta = json.loads(plan_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise SchemaError(f"{plan_file} is not valid JSON ({exc}); re-save the model") from exc
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        found = meta.get("schema") if isinstance(meta, dict) else type(meta).__name__
        raise SchemaError(f"{plan_file} has schema {found!r}; expected {SCHEMA!r} (re-save with this accelkit)")
    for key, kind in (("format", str), ("plan", list), ("settings", dict), ("files", dict)):
        if not isinstance(meta.get(key), kind):
            raise SchemaError(f"{plan_file}: field {key!r} missing or not a {kind.__name__}; re-save the model")
    if meta["format"] not in _FORMATS:
        raise SchemaError(f"{plan_file}: format {meta['format']!r}; expected one of {', '.join(_FORMATS)}")
    model_file = "model.onnx" if meta["format"] in ("onnx", "hf-onnx") else "model.safetensors"
    if model_file not in meta["files"]:
        # an empty list would otherwise skip verification and load whatever lies there
        raise SchemaError(f"{plan_file}: 'files' does not list {model_file} with its checksum; re-save the model")
    for name, digest in meta["files"].items():
        f = resolve_inside(root, name, plan_file)
        if not f.is_file():
            raise SchemaError(f"{root} lacks {name}, listed in {_PLAN_FILE}; the save is incomplete")
        if not isinstance(digest, str) or _sha256(f) != digest:
            raise SchemaError(f"{f} does not match its checksum in {_PLAN_FILE}; the file is corrupt, re-save it")
    listed = {PurePosixPath(n).as_posix() for n in meta["files"]} | {_PLAN_FILE}
    for f in sorted(root.rglob("*")):
        rel = f.relative_to(root).as_posix()
        if rel not in listed and f.suffix.lower() in _ARTIFACT_SUFFIXES and (f.is_file() or f.is_symlink()):
            raise SchemaError(f"{root}: {rel} is not listed in {_PLAN_FILE}; remove it or re-save the model "
                              "(unlisted model files are never loaded)")
    return meta


def _refuse_external_data(onnx_bytes: bytes, onnx_file: Path) -> None:
    """A graph whose tensors live in external files would make ONNX Runtime read paths the graph
    names (outside the folder, unverified); accelkit.save never writes such graphs."""
    from accelkit._lazy import require

    onnx = require("onnx", "onnx")
    try:
        graph = onnx.load_from_string(onnx_bytes).graph
    except Exception as exc:  # google.protobuf DecodeError and friends
        raise SchemaError(f"{onnx_file} is not a valid ONNX graph ({type(exc).__name__}); re-save the model") from exc
    external = onnx.TensorProto.EXTERNAL
    tensors = list(graph.initializer) + [a.t for n in graph.node for a in n.attribute if a.HasField("t")]
    if any(t.data_location == external for t in tensors):
        raise SchemaError(f"{onnx_file} refers to external tensor data; accelkit loads only self-contained graphs")


def _embedded_workload(name: Any, plan_file: Path) -> Any:
    """The workload a file names, rebuilt only when it is embedded: never import what a file names."""
    from accelkit.workloads import _REGISTRY, get_workload

    if not isinstance(name, str) or name not in _REGISTRY:
        raise SchemaError(
            f"{plan_file} names workload {name!r}, which is not embedded ({sorted(_REGISTRY)}); loading never "
            "imports code named in a file: pass it yourself, load(path, workload=<Workload object>)"
        )
    return get_workload(name)


def load(
    path: str | os.PathLike, *, baseline: nn.Module | None = None, workload: Any = None
) -> Any:
    """Restore what ``save`` wrote: a ``ShippedModel`` for a self-contained folder (called like
    the original model; ``encode`` for embedding models), else a ``LoadedModel``. ``baseline``: the fp32 model, when the save names no workload.

    ``workload``: a ``Workload`` object to rebuild the plan on, used instead of the name in
    ``plan.json`` — needed for a user's ``module:function`` workload, because loading imports
    nothing a file names (only the embedded workloads are rebuilt by name).

    Raises SchemaError for a missing directory, a wrong schema, a file outside the folder, an
    unlisted model file, files that fail their checksum, or weights/graphs that do not parse.
    """
    from accelkit.workloads.base import RunSettings, Workload

    if workload is not None and not isinstance(workload, Workload):
        raise ConfigError(f"load(workload={type(workload).__name__}): expected an accelkit Workload object")
    root = Path(path)
    plan_file = root / _PLAN_FILE
    meta = _read_meta(root)
    try:
        settings = RunSettings(**meta["settings"])
    except TypeError as exc:
        raise SchemaError(f"{plan_file}: settings do not fit RunSettings ({exc})") from exc
    plan = normalize_plan(meta["plan"])
    if meta["format"] in ("hf-onnx", "hf-torch"):
        from accelkit.export.artifact import load_shipped

        if meta["format"] == "hf-onnx":
            _refuse_external_data((root / "model.onnx").read_bytes(), root / "model.onnx")
        return load_shipped(root, meta, settings, plan)
    if meta["format"] == "onnx":
        from accelkit.errors import MissingDependencyError
        from accelkit.export.artifact import graph_module

        onnx_file = root / "model.onnx"
        onnx_bytes = onnx_file.read_bytes()
        _refuse_external_data(onnx_bytes, onnx_file)
        try:
            model: Any = graph_module(onnx_bytes, meta)
        except MissingDependencyError:
            raise
        except (TypeError, ValueError) as exc:
            raise SchemaError(f"{plan_file}: the runtime settings do not fit ({exc}); re-save the model") from exc
        except Exception as exc:  # onnxruntime's InvalidProtobuf/Fail are not exported stably
            raise SchemaError(f"{onnx_file} is not a loadable ONNX graph ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}); re-save the model") from exc
        return LoadedModel(model, settings, plan, meta.get("workload"), meta.get("details") or {})

    from safetensors.torch import load_file

    from accelkit.variants import build_variant

    if workload is not None:
        wl = workload
    elif meta.get("workload") is None:
        if baseline is None:
            raise SchemaError(f"{root} names no workload; call load(path, baseline=<fp32 model>)")
        wl = None
    else:
        wl = _embedded_workload(meta["workload"], plan_file)
    base = baseline if baseline is not None else wl.build_model()
    if plan and wl is not None:
        start = RunSettings(batch_size=settings.batch_size, max_length=settings.max_length, device=settings.device)
        model = build_variant("+".join(s["technique"] for s in plan), base, start, wl).model
    else:
        model = base
    weights = root / "model.safetensors"
    try:
        tensors = load_file(str(weights))
    except Exception as exc:  # SafetensorError (truncated header, bad offsets) is not exported stably
        raise SchemaError(f"{weights} is not a readable safetensors file ({exc}); re-save the model") from exc
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
