"""Tasks by name: every module of ``accelkit.tasks`` registers its TaskSpec on import, so a new
task is one new module; the task a model folder implies is found from what each task claims."""

from __future__ import annotations

from collections.abc import Sequence

from accelkit.errors import ConfigError, ModelFolderError
from accelkit.registration import import_package_modules
from accelkit.tasks.base import TaskSpec

__all__ = ["get_task", "infer_task", "list_tasks", "register_task"]

_TASKS: dict[str, TaskSpec] = {}
_loaded = False


def register_task(cls: type[TaskSpec]) -> type[TaskSpec]:
    """Class decorator: check the task and make one instance of it available by its name."""
    spec = cls()
    spec.check()
    if spec.name in _TASKS and type(_TASKS[spec.name]) is not cls:
        raise ConfigError(f"task {spec.name!r} is registered twice ({type(_TASKS[spec.name]).__name__}, "
                          f"{cls.__name__}); give one of them another name")
    _TASKS[spec.name] = spec
    return cls


def _load_task_modules() -> None:
    """Import every module of ``accelkit.tasks`` once, for the side effect of registration."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import_package_modules(__file__, "accelkit.tasks")


def list_tasks() -> list[str]:
    """Every task's name, sorted."""
    _load_task_modules()
    return sorted(_TASKS)


def get_task(name: str) -> TaskSpec:
    """The task called ``name``; a ConfigError naming the choices for any other."""
    _load_task_modules()
    if name not in _TASKS:
        raise ConfigError(f"--task {name!r}: expected one of {', '.join(list_tasks())}")
    return _TASKS[name]


def infer_task(architectures: Sequence[str], sentence_transformers: bool = False) -> str:
    """The task a model folder implies: its sentence-transformers layout, else the first of its
    config's ``architectures`` a task claims by suffix, else a fallback task claiming them all;
    a ModelFolderError asking for ``--task`` when none does."""
    specs = [_TASKS[n] for n in list_tasks()]
    if sentence_transformers:
        return next(s.name for s in specs if s.sentence_transformers)
    archs = [str(a) for a in architectures]
    for arch in archs:
        for spec in specs:
            if not spec.fallback and spec.architectures and arch.endswith(spec.architectures):
                return spec.name
    for spec in specs:
        if spec.fallback and archs and all(a.endswith(spec.architectures) for a in archs):
            return spec.name
    raise ModelFolderError(f"cannot tell the task from the config (architectures: {archs or 'none'}); pass "
                           f"--task, one of {', '.join(list_tasks())}")
