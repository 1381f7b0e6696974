"""The check every distillation config shares."""

from __future__ import annotations

from accelkit.errors import ConfigError


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name}={value!r}: expected a positive number")
