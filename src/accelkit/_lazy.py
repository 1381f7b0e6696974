"""One lazy-import helper for optional or heavy dependencies."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from accelkit.errors import MissingDependencyError


def is_available(module: str) -> bool:
    """True when ``module`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, extra: str | None = None) -> ModuleType:
    """Import ``module`` or raise MissingDependencyError naming how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        hint = f"pip install 'accelkit[{extra}]'" if extra else f"pip install {module}"
        raise MissingDependencyError(f"{module} is not installed ({exc}); install it with: {hint}") from exc
