"""What every pruning method shares: its error type and the check of a pruning fraction."""

from __future__ import annotations

from accelkit.errors import ConfigError


class PruningError(ConfigError):
    """The model cannot be pruned as asked (untraceable, or the result would not run)."""


def _check_ratio(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and 0.0 < float(value) < 1.0):
        raise ConfigError(f"{name}={value!r}: expected a fraction strictly between 0 and 1, e.g. 0.5")
