"""Save an accelerated model to a directory and load it back with identical outputs.

The model's runtime (accelkit.runtimes) writes its files: an ONNX graph (``model.onnx``) with
its session settings, or a PyTorch model's plain tensors (``model.safetensors``) with a record
of its int8, SmoothQuant and cast layers. ``plan.json`` names the runtime and holds the schema,
plan, run settings and file checksums. Loading hands the folder to that runtime; a PyTorch model
is rebuilt on its fp32 architecture (from config.json, an embedded workload's name, or the
caller) with only the recorded layers put back: no technique runs on load. A model no runtime
can save as it is is refused at save time (ShipError; ``check_saveable`` asks without writing).
Nothing is unpickled; the directory appears complete or not at all.

Loading trusts nothing in the folder: it imports no code a file names (only embedded workloads
are built by name; ``load(path, workload=...)`` for others), reads only files listed in
``plan.json`` that lie inside the folder, checks every checksum, and refuses unlisted model files.
"""

from __future__ import annotations

import copy
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

__all__ = ["SCHEMA", "LoadedModel", "check_saveable", "save", "load", "normalize_plan", "resolve_inside"]

SCHEMA = "accelkit.saved/2"  # 2: written by the runtime, loaded without re-running the plan
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


def _is_built(obj: Any) -> bool:
    """A ``Built`` record (techniques.registry, a layer above this one): read by its fields."""
    return all(hasattr(obj, a) for a in ("model", "settings", "details", "steps", "plan"))


def _baseline_architecture(workload: Any) -> Any:
    """A copy of the fp32 model of a Workload object or an embedded workload's name (the runtime
    puts its layers into it; a workload may hand out one shared model); None for neither."""
    if workload is None:
        return None
    if isinstance(workload, str):
        from accelkit.workloads import _REGISTRY, get_workload

        if workload not in _REGISTRY:
            return None
        workload = get_workload(workload)
    return copy.deepcopy(workload.build_model())


def check_saveable(model_or_variant: Any) -> None:
    """ShipError, the one ``save`` would raise, when no runtime serves the model or its runtime
    cannot record it as it is (compiled graphs, a technique's own wrappers, torchao weight-only
    tensors); writes and copies nothing. ``model_or_variant``: as for ``save``. A structural
    change (pruned shapes) shows only when the tensors are loaded onto the architecture, which
    ``save`` does as it writes."""
    from accelkit.runtimes.registry import runtime_of

    model = model_or_variant
    if _is_built(model_or_variant):
        model = model_or_variant.model
    elif isinstance(model_or_variant, tuple):
        model = model_or_variant[0]
    runtime_of(model).check_saveable()


def save(
    model_or_variant: Any,
    path: str | os.PathLike,
    plan: str | list | None = None,
    *,
    workload: Any = None,
    settings: Any = None,
    overwrite: bool = False,
    ship: bool | None = None,
) -> Path:
    """Write ``model_or_variant`` (a model, a runtime such as an OrtModule, a ``Built`` record, or
    (model, settings)) to ``path`` with the model's runtime.

    ``plan``: the variant name or plan steps that made it (provenance: loading never re-runs it;
    a ``Built`` record's own ``plan``, each step with the config it applied, when not given);
    ``workload``: the workload (name or object) whose fp32 architecture a PyTorch model is loaded
    on. ``path`` may be an earlier save (replaced); a folder holding other files is refused with
    OutputPathError unless ``overwrite=True``, and then only accelkit's own files in it are
    replaced (see accelkit.outdir).

    ``workload`` given as the Workload object of a Hugging Face model (``--model``, minilm) makes
    the folder self-contained (``accelkit.export.artifact``) unless ``ship=False``; ``ship=True``
    requires it. Raises ShipError, before anything is written, for a model that cannot be saved
    as it is (compiled graphs, torchao weight-only tensors, a technique's own wrappers such as
    early exit, shapes the architecture does not describe), naming why and what to choose instead.
    """
    from accelkit.export.artifact import ShipError, saved_format, ship_files, ship_spec
    from accelkit.runtimes.registry import runtime_of
    from accelkit.workloads.base import RunSettings

    model = model_or_variant
    details = None
    if _is_built(model_or_variant):
        model, details = model_or_variant.model, model_or_variant.details
        settings = settings if settings is not None else model_or_variant.settings
        if plan is None:  # the steps with the configs they applied (a self-tuning step's choice)
            plan = model_or_variant.plan
    elif isinstance(model_or_variant, tuple):
        model = model_or_variant[0]
        if settings is None and len(model_or_variant) > 1:
            settings = model_or_variant[1]
    runtime = runtime_of(model)
    runtime.check_saveable()  # before any folder is made
    spec = None  # what a self-contained folder needs, read once from the workload
    workload_obj = workload if workload is not None and not isinstance(workload, str) else None
    if workload_obj is not None:
        spec = ship_spec(workload_obj) if ship is not False else None
        workload = getattr(workload_obj, "name", None)
    if ship and spec is None:
        raise ShipError(f"workload {workload!r} names no Hugging Face model folder; it cannot ship self-contained")
    settings = settings if settings is not None else RunSettings()
    target = Path(path)
    prepare_output_dir(target, overwrite=overwrite, owned=SAVED_MODEL_FILES, create=False)
    keep_foreign = target.is_dir() and bool(foreign_files(target, SAVED_MODEL_FILES))
    tmp = make_temp_dir(target.parent, prefix=f".{target.name}.")
    try:
        if details is None:
            details = getattr(model, "accelkit_details", None) or runtime.describe().to_dict()
        meta: dict[str, Any] = {
            "schema": SCHEMA,
            "plan": normalize_plan(plan),
            "workload": workload,
            "settings": settings.to_dict(),
            "details": _json_safe(details),
            "torch": torch.__version__,
        }
        if spec is not None:
            meta.update(ship_files(runtime, spec, settings, tmp))
        else:
            fields = runtime.save(tmp)
            if runtime.needs_baseline:
                _check_loads(runtime, fields, tmp, workload_obj if workload_obj is not None else workload)
                if workload is None:
                    meta["note"] = "no workload named: load(path, baseline=...) must be given the fp32 model"
            meta.update(format=saved_format(type(runtime)), **fields)
        meta["files"] = {f.relative_to(tmp).as_posix(): _sha256(f) for f in sorted(tmp.rglob("*")) if f.is_file()}
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


def _check_loads(runtime: Any, fields: dict, tmp: Path, workload: Any) -> None:
    """Load the tensors just written onto the workload's fp32 architecture: a model whose shapes
    that architecture does not describe is refused now, not when it is loaded."""
    from accelkit.export.artifact import ShipError

    architecture = _baseline_architecture(workload)
    if architecture is None:  # no architecture to check against: load(path, baseline=...) checks it
        return
    try:
        type(runtime).load(tmp, fields, baseline=architecture)
    except SchemaError as exc:
        raise ShipError(f"the model does not load onto {workload if isinstance(workload, str) else 'its workload'}"
                        f"'s architecture ({exc}): a structural change (pruned or distilled shapes) that no "
                        "record describes; save it with the technique's own save function, or choose a plan "
                        "without structure steps") from exc


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


# onnx / torch / openvino: the runtime's files; hf-*: self-contained with config.json (export.artifact)
_FORMATS = ("onnx", "torch", "openvino", "hf-onnx", "hf-torch", "hf-openvino")


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
    for key, kind in (("format", str), ("runtime", str), ("plan", list), ("settings", dict), ("files", dict)):
        if not isinstance(meta.get(key), kind):
            raise SchemaError(f"{plan_file}: field {key!r} missing or not a {kind.__name__}; re-save the model")
    if meta["format"] not in _FORMATS:
        raise SchemaError(f"{plan_file}: format {meta['format']!r}; expected one of {', '.join(_FORMATS)}")
    from accelkit.runtimes.registry import get_runtime

    try:
        model_file = get_runtime(meta["runtime"]).model_file
    except ConfigError as exc:
        raise SchemaError(f"{plan_file}: {exc}; re-save the model") from exc
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
    the original model; ``encode`` for embedding models), else a ``LoadedModel``. No technique
    runs: the runtime named in plan.json loads its files. ``baseline``: the fp32 model a PyTorch
    save is loaded onto, when the save names no workload (it is copied, not changed).

    ``workload``: a ``Workload`` object whose fp32 architecture a PyTorch save is loaded onto,
    used instead of the name in ``plan.json`` — needed for a user's ``module:function`` workload,
    because loading imports nothing a file names (only embedded workloads are built by name).

    Raises SchemaError for a missing directory, a wrong schema, a file outside the folder, an
    unlisted model file, files that fail their checksum, or weights/graphs that do not parse.
    """
    from accelkit.runtimes.registry import get_runtime
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
    runtime = get_runtime(meta["runtime"])
    if meta["format"].startswith("hf-"):
        from accelkit.export.artifact import load_shipped

        return load_shipped(root, meta, settings, plan)
    architecture = None
    if runtime.needs_baseline:
        if baseline is not None:
            architecture = copy.deepcopy(baseline)  # the caller's model stays as it is
        elif workload is not None:
            architecture = _baseline_architecture(workload)
        elif meta.get("workload") is None:
            raise SchemaError(f"{root} names no workload; call load(path, baseline=<fp32 model>)")
        else:
            architecture = _baseline_architecture(_embedded_workload(meta["workload"], plan_file))
    model = _loading(plan_file, root / runtime.model_file,
                     lambda: runtime.load(root, meta, baseline=architecture).unwrap())
    return LoadedModel(model, settings, plan, meta.get("workload"), meta.get("details") or {})


def _loading(plan_file: Path, model_file: Path, load_fn: Any) -> Any:
    """``load_fn()`` with a library's parse errors turned into one SchemaError naming the file."""
    from accelkit.errors import MissingDependencyError

    try:
        return load_fn()
    except (MissingDependencyError, SchemaError):
        raise
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"{plan_file}: the runtime settings do not fit ({exc}); re-save the model") from exc
    except Exception as exc:  # onnxruntime's InvalidProtobuf/Fail are not exported stably
        raise SchemaError(f"{model_file} is not loadable ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}); re-save the model") from exc
