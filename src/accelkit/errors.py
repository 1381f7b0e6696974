"""Exception types the library raises for bad input.

Every one carries a single line naming the problem and the fix; the CLI prints
that line and exits 2. They subclass ValueError so generic callers still catch them.
"""

from __future__ import annotations

__all__ = [
    "AccelkitError",
    "ConfigError",
    "DataFileError",
    "DeviceUnavailableError",
    "MissingDependencyError",
    "ModelFolderError",
    "OutputPathError",
    "SchemaError",
    "UnknownVariantError",
    "UnknownWorkloadError",
    "WorkloadImportError",
]


class AccelkitError(ValueError):
    """Base class: bad input from the user, with the fix in the message."""


class ConfigError(AccelkitError):
    """A config field has a value outside its documented range."""


class DataFileError(ConfigError):
    """A user's ``--data`` file or folder cannot be read; the message names the file and the fix."""


class ModelFolderError(ConfigError):
    """A user's ``--model`` folder or ``module:function`` cannot be loaded; the message says why."""


class UnknownWorkloadError(AccelkitError):
    """The workload name is neither embedded nor a ``package.module:function``."""


class WorkloadImportError(AccelkitError):
    """A ``package.module:function`` workload failed to import or returned the wrong type."""


class UnknownVariantError(AccelkitError):
    """A variant name is not registered for this workload and task."""


class DeviceUnavailableError(AccelkitError):
    """The requested device (e.g. ``cuda``) is not present on this machine."""


class OutputPathError(AccelkitError):
    """An output path cannot be written."""


class SchemaError(AccelkitError):
    """A results or plan file does not have the expected schema."""


class MissingDependencyError(AccelkitError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""
