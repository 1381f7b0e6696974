"""Embedded workloads (minilm, digits, gpt-mini) and loading a user's ``module:function``.

A user workload is a function taking no arguments that returns either a
``Workload`` or a dict ``{"model": nn.Module, "inputs": Tensor, "labels": Tensor?}``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from torch import nn

from accelkit.errors import UnknownWorkloadError, WorkloadImportError
from accelkit.workloads.base import (
    RunSettings,
    TensorWorkload,
    Workload,
    autocast_context,
    cache_dir,
)

__all__ = [
    "RunSettings",
    "TensorWorkload",
    "Workload",
    "autocast_context",
    "cache_dir",
    "get_workload",
    "list_workloads",
    "register_workload",
    "resolve_workload",
    "workload_from_model",
]

_REGISTRY: dict[str, Callable[[], Workload]] = {}


def register_workload(name: str) -> Callable:
    """Decorator: make a zero-argument Workload factory available by ``name``."""

    def deco(fn: Callable[[], Workload]) -> Callable[[], Workload]:
        _REGISTRY[name] = fn
        return fn

    return deco


@register_workload("minilm")
def _minilm() -> Workload:
    from accelkit.workloads.minilm import MiniLMWorkload

    return MiniLMWorkload()


@register_workload("digits")
def _digits() -> Workload:
    from accelkit.workloads.digits import DigitsWorkload

    return DigitsWorkload()


@register_workload("gpt-mini")
def _gpt_mini() -> Workload:
    from accelkit.workloads.gpt_mini import GPTMiniWorkload

    return GPTMiniWorkload()


def list_workloads() -> list[str]:
    return sorted(_REGISTRY)


def get_workload(name: str) -> Workload:
    """An embedded workload by name, or a user's ``package.module:function``."""
    if name in _REGISTRY:
        return _REGISTRY[name]()
    if ":" not in name:
        raise UnknownWorkloadError(
            f"workload {name!r} is unknown: use one of {list_workloads()} or 'package.module:function'"
        )
    return _load_user_workload(name)


def _load_user_workload(spec: str) -> Workload:
    module_name, _, fn_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise WorkloadImportError(
            f"workload {spec!r}: cannot import module {module_name!r} ({type(exc).__name__}: {exc}); "
            "check it is on PYTHONPATH"
        ) from exc
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise WorkloadImportError(f"workload {spec!r}: {module_name} has no callable {fn_name!r}")
    try:
        made = fn()
    except Exception as exc:
        raise WorkloadImportError(f"workload {spec!r}: calling {fn_name}() raised {type(exc).__name__}: {exc}") from exc
    if isinstance(made, Workload):
        return made
    if isinstance(made, dict) and isinstance(made.get("model"), nn.Module) and "inputs" in made:
        model = made["model"]
        return TensorWorkload(
            spec,
            lambda: model,
            made["inputs"],
            made.get("labels"),
            calib_inputs=made.get("calib_inputs"),
            calib_labels=made.get("calib_labels"),
            default_batch_size=int(made.get("batch_size", 32)),
        )
    raise WorkloadImportError(
        f"workload {spec!r}: {fn_name}() returned {type(made).__name__}; expected an accelkit Workload "
        "or a dict with 'model' (nn.Module) and 'inputs' (Tensor), optionally 'labels'"
    )


def workload_from_model(model, data, **options) -> Workload:
    """A workload for the user's own model folder (or ``module:function``) and ``--data`` file;
    see ``accelkit.workloads.user_model.workload_from_model`` for the options."""
    from accelkit.workloads.user_model import workload_from_model as build

    return build(model, data, **options)


def resolve_workload(name: str, model_options: dict | None = None) -> Workload:
    """The user's own model on their data when ``model_options`` (workload_from_model's arguments,
    with ``model`` and ``data``) are given, else the workload called ``name``."""
    if model_options:
        options = dict(model_options)
        return workload_from_model(options.pop("model"), options.pop("data"), **options)
    return get_workload(name)
