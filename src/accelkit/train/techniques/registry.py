"""The registry of training techniques and how a plan of them becomes one ``TrainVariant``.

A technique registers beside its code (``@register_training_technique`` on its apply function)
with a descriptor: its ``group`` (two techniques of one group never compose: one precision, one
weight format...), the ``needs`` a data set or model must offer (``images``: 4-D inputs;
``lengths``: one length per item, for padding per batch), the techniques it ``requires`` earlier
in the plan, a config dataclass and a description of what it buys and costs. A duplicate name is
an error, never a silent overwrite. The modules beside this one are imported on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from accelkit.config import Config
from accelkit.errors import ConfigError, UnknownVariantError

__all__ = [
    "TRAINING_NEEDS",
    "TrainVariant",
    "TrainingTechnique",
    "build_train_variant",
    "composition_error",
    "get_training_technique",
    "list_training_techniques",
    "register_training_technique",
]

# what a technique may need from the data and model it trains
TRAINING_NEEDS = {
    "images": "4-D image inputs (B, C, H, W)",
    "lengths": "a data set with one length per item, padded per batch (texts)",
}


@dataclass(frozen=True)
class TrainVariant:
    """How one training step runs: what a plan of training techniques resolves to (the bench's
    step reads these flags)."""

    precision: str = "fp32"
    compile: bool = False
    fused: bool = False  # fused AdamW (else foreach)
    channels_last: bool = False
    # weights, gradients and AdamW state held in bf16: no per-GEMM weight casts and half the
    # optimizer's memory traffic. Costs: an update under half a bf16 step of its weight (~0.4%)
    # is lost, so a long run at a small LR stalls where fp32 weights would not; the validation
    # loss beside the speed says whether this run's loss allowed it.
    bf16_weights: bool = False
    # batches of similar lengths, padded per batch (texts only: a dataset with ``lengths``)
    group_by_length: bool = False
    # dropout masks drawn 16 bits at a time in the compiled step (train.techniques.packed_dropout)
    packed_dropout: bool = False


@dataclass(frozen=True)
class TrainingTechnique:
    """A registered training technique's descriptor."""

    name: str
    group: str
    description: str  # what it buys, what it costs
    config: type[Config]
    apply: Callable[[TrainVariant, Any], TrainVariant]
    needs: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    module: str = ""  # where it was registered

    def composes_with(self, other: TrainingTechnique) -> bool:
        """Whether the two may sit in one plan (either order): not one group twice."""
        return self.name != other.name and self.group != other.group

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "group": self.group, "description": self.description,
                "config": self.config().to_dict(), "needs": list(self.needs), "requires": list(self.requires)}


_TECHNIQUES: dict[str, TrainingTechnique] = {}
_loaded = [False]


def register_training_technique(name: str, *, group: str, description: str, config: type[Config],
                                needs: Sequence[str] = (), requires: Sequence[str] = ()) -> Callable:
    """Register the decorated ``apply(variant, config) -> variant`` as training technique ``name``."""
    unknown = [n for n in needs if n not in TRAINING_NEEDS]
    if unknown:
        raise ConfigError(f"training technique {name!r}: needs {unknown}; expected keys of {list(TRAINING_NEEDS)}")

    def decorate(fn: Callable[[TrainVariant, Any], TrainVariant]) -> Callable[[TrainVariant, Any], TrainVariant]:
        if name in _TECHNIQUES:
            raise ConfigError(f"training technique {name!r} is registered twice ({_TECHNIQUES[name].module} and "
                              f"{fn.__module__}); rename one")
        _TECHNIQUES[name] = TrainingTechnique(name, group, description, config, fn, tuple(needs), tuple(requires),
                                              fn.__module__)
        return fn

    return decorate


def _ensure_loaded() -> None:
    if not _loaded[0]:
        _loaded[0] = True
        from accelkit.registration import import_package_modules

        import_package_modules(__file__, "accelkit.train.techniques")


def list_training_techniques() -> list[str]:
    _ensure_loaded()
    return list(_TECHNIQUES)


def get_training_technique(name: str) -> TrainingTechnique:
    _ensure_loaded()
    if name not in _TECHNIQUES:
        raise UnknownVariantError(f"training technique {name!r}: expected one of {list(_TECHNIQUES)}")
    return _TECHNIQUES[name]


@dataclass(frozen=True)
class _Step:
    technique: TrainingTechnique
    config: Any = field(default=None)


def _steps(plan: Sequence[str | Mapping[str, Any]]) -> list[_Step]:
    steps = []
    for step in plan:
        if isinstance(step, str):
            tech = get_training_technique(step)
            steps.append(_Step(tech, tech.config()))
        elif isinstance(step, Mapping) and isinstance(step.get("technique"), str):
            tech = get_training_technique(step["technique"])
            steps.append(_Step(tech, tech.config.from_dict(step.get("config") or {})))
        else:
            raise ConfigError(f"training plan step {step!r}: expected a technique name or "
                              "{'technique': name, 'config': {...}}")
    return steps


def composition_error(plan: Sequence[str | Mapping[str, Any]]) -> str | None:
    """Why the techniques of ``plan`` cannot run together (one group twice, a required technique
    missing before one), or None."""
    seen: list[TrainingTechnique] = []
    for step in _steps(plan):
        tech = step.technique
        clash = next((s for s in seen if not s.composes_with(tech)), None)
        if clash is not None:
            return f"{clash.name} and {tech.name} are both {tech.group} techniques; keep one"
        missing = [r for r in tech.requires if r not in {s.name for s in seen}]
        if missing:
            return f"{tech.name} needs {', '.join(missing)} before it in the plan"
        seen.append(tech)
    return None


def build_train_variant(plan: Sequence[str | Mapping[str, Any]]) -> TrainVariant:
    """The ``TrainVariant`` a plan of training techniques resolves to, applied in order from fp32
    eager (an empty plan); ConfigError when they do not compose."""
    why = composition_error(plan)
    if why is not None:
        raise ConfigError(f"training plan {[s if isinstance(s, str) else s.get('technique') for s in plan]}: {why}")
    variant = TrainVariant()
    for step in _steps(plan):
        variant = step.technique.apply(variant, step.config)
    return variant
