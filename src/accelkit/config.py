"""One base for every configuration dataclass: a JSON-shaped ``to_dict``/``from_dict`` round-trip
that rejects unknown keys, rebuilds nested configs and tuples, and reads the ``version`` field
(so a config can sit in results.json, plan.json and cache keys)."""

from __future__ import annotations

import copy
import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar

from accelkit.errors import ConfigError

__all__ = ["Config"]


class Config:
    """Mixin for ``@dataclass`` configs: ``to_dict()`` gives plain JSON values (tuples as lists,
    nested configs as dicts); ``from_dict(d)`` undoes it and rejects what it cannot read.

    ``_omit_at_default`` names fields added after a config's first release: ``to_dict()`` leaves
    them out while they hold their default, so keys computed from earlier dicts (cached trained
    students on disk) stay valid.
    """

    _omit_at_default: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        defaults = _defaults(type(self))
        for name in self._omit_at_default:
            if d[name] == _plain(defaults[name]):
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> typing.Self:
        if not isinstance(d, Mapping):
            raise ConfigError(f"{cls.__name__}.from_dict got {type(d).__name__}; expected a dict of its fields")
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{cls.__name__} has unknown keys {unknown} (no field of that name); "
                              f"known fields: {sorted(known)}")
        known_version = _defaults(cls).get("version")
        version = d.get("version")
        if isinstance(known_version, int) and isinstance(version, int) and version > known_version:
            raise ConfigError(f"{cls.__name__} version={version}: this accelkit reads {cls.__name__} "
                              f"version {known_version} at most; upgrade accelkit to read it")
        kinds = _field_kinds(cls)
        return cls(**{name: _rebuild(kinds.get(name), value) for name, value in d.items()})


def _plain(value: Any) -> Any:
    """A JSON-shaped deep copy: configs → their to_dict(), tuples → lists (as JSON writes them)."""
    if isinstance(value, Config):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return copy.deepcopy(value)


def _rebuild(kind: type | None, value: Any) -> Any:
    if kind is tuple and isinstance(value, list):
        return tuple(value)
    if kind is not None and kind is not tuple and isinstance(value, Mapping):
        return kind.from_dict(value)
    return value


@functools.cache
def _defaults(cls: type) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


@functools.cache
def _field_kinds(cls: type) -> dict[str, type]:
    """Fields that from_dict must rebuild: ``tuple`` for tuple-typed ones, the class for nested configs."""
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):  # an annotation names something imported only for type checking
        hints = {}
    defaults = _defaults(cls)
    kinds: dict[str, type] = {}
    for f in dataclasses.fields(cls):
        for t in _alternatives(hints.get(f.name)):
            if t is tuple or typing.get_origin(t) is tuple:
                kinds[f.name] = tuple
            elif isinstance(t, type) and issubclass(t, Config):
                kinds[f.name] = t
        if f.name not in kinds and f.name in defaults:  # unresolved hint: judge by the default
            default = defaults[f.name]
            if isinstance(default, tuple):
                kinds[f.name] = tuple
            elif isinstance(default, Config):
                kinds[f.name] = type(default)
    return kinds


def _alternatives(hint: Any) -> tuple[Any, ...]:
    # ``X | None`` and ``Optional[X]``: each alternative; anything else: itself
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,) if hint is not None else ()
