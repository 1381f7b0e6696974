"""Registries fill themselves: import every public module of a package once, for the side effect
of the ``@register_*`` decorators in them, so a new technique, runtime or task is one new file."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

__all__ = ["import_package_modules"]


def import_package_modules(registry_file: str, package: str, *, recursive: bool = False) -> None:
    """Import the modules beside ``registry_file`` (the registry's own ``__file__``) as
    ``package.<name>``, skipping ``_private`` ones; ``recursive`` also walks sub-packages.

    The folder is found from the registry's file, not from ``package.__path__``: the package's
    ``__init__`` imports its registry, and importing the package from the registry would make a
    cycle.
    """
    folder = [str(Path(registry_file).parent)]
    walk = pkgutil.walk_packages if recursive else pkgutil.iter_modules
    for info in walk(folder, prefix=f"{package}."):
        if not info.name.rsplit(".", 1)[-1].startswith("_"):
            importlib.import_module(info.name)
