"""Technique descriptors: what each named variant is, what it needs, and what it composes with.

Each technique module registers its own variants with ``@register_technique`` beside its
code (as timm's ``@register_model``); ``bench`` and ``optimize`` read only these
descriptors. Applying one gets a ``BuildContext`` (the user's budget, objective, batch size,
calibration data) and returns a ``Built`` record instead of attaching state to the model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import nn

from accelkit.config import Config
from accelkit.errors import ConfigError, UnknownVariantError
from accelkit.registration import import_package_modules
from accelkit.runtimes.registry import runtime_forms
from accelkit.workloads.base import RunSettings, Workload

__all__ = [
    "BASELINE",
    "BASELINE_ALIASES",
    "FORMS",
    "GROUPS",
    "OBJECTIVES",
    "BuildContext",
    "Built",
    "CompositionProblem",
    "PlanSpec",
    "PlanStep",
    "Technique",
    "TECHNIQUES",
    "build_plan",
    "composition_error",
    "composition_problem",
    "get_technique",
    "list_techniques",
    "needs_package",
    "plan_steps",
    "register_technique",
    "unavailable_reason",
]

# Earlier groups change the network, later ones how it runs; a plan takes at most one of each, in order.
# "serving" steps reshape how an already-built runtime is driven (parallel streams): they apply to
# what a runtime step produced, so the search composes them and never screens them alone.
GROUPS = ("structure", "precision", "input", "runtime", "serving")
# What kind of object a step leaves behind, so a descriptor can say what it can be applied to:
#   eager       a float nn.Module that runs eagerly (what every workload's build_model returns)
#   eager-lowp  the same with weights cast to bf16/fp16
#   quantized   torch int8/int4 modules (packed weights: no ONNX export, no further casting)
#   graph       a compiled or PT2E-exported callable (no further module surgery)
#   dynamic     a data-dependent wrapper (early exit, routed depth): runs eagerly, not exportable
# and one form per foreign runtime, its class's ``form`` (accelkit.runtimes): "ort" for an ONNX
# Runtime session, "openvino" for an OpenVINO compiled model (torch autocast and module surgery
# have no effect on either)
FORMS = ("eager", "eager-lowp", "quantized", "graph", *runtime_forms(lambda cls: cls.family != "torch"), "dynamic")
OBJECTIVES = ("throughput", "latency", "memory", "size")
# The name of the unaccelerated run every speed-up is against: how the user runs the model today
# (``Workload.default_settings``). "baseline", its earlier name, is accepted as an alias.
BASELINE = "default"
# The share of the user's budget a self-tuning step may spend on calibration data; the rest is
# margin for the calibration → held-out gap (0.4 of a 0.01 cosine budget is 0.004).
CALIB_BUDGET_SHARE = 0.4
BASELINE_ALIASES = frozenset({BASELINE, "baseline"})
_ALL_FORMS = frozenset(FORMS)


@dataclass
class BuildContext:
    """What a technique may use while it builds: never the held-out evaluation data.

    ``max_quality_drop`` is the user's budget in the workload's primary metric (None: the
    technique's own default); techniques that tune themselves tune to it.
    """

    workload: Workload
    settings: RunSettings
    max_quality_drop: float | None = None
    objective: str = "throughput"
    steps_before: tuple[str, ...] = ()

    @property
    def batch_size(self) -> int:
        return self.settings.batch_size

    def calib_data(self, limit: int | None = None) -> Any:
        return self.workload.calib_data(limit)

    def calib_batches(self, limit: int, *, batch_size: int | None = None) -> list[Any]:
        """Model inputs of up to ``limit`` calibration items, in fp32 (no autocast)."""
        settings = self.settings.with_(autocast=None, batch_size=batch_size or self.settings.batch_size)
        return [inputs for inputs, _ in self.workload.batches(self.workload.calib_data(limit), settings)]

    def example_inputs(self) -> Any:
        """One batch of calibration inputs (export, tracing, FLOP counting)."""
        data = self.workload.calib_data(self.settings.batch_size)
        return self.workload.example_inputs(data, self.settings.with_(autocast=None))

    def budget(self, default: float, *, share: float = 1.0) -> float:
        """The budget a self-tuning step aims for on calibration data: ``share`` of the user's
        budget (a margin for the calibration → held-out gap), or ``default`` when none was given."""
        return default if self.max_quality_drop is None else self.max_quality_drop * share


@dataclass
class Built:
    """What applying a technique (or a whole plan) returns.

    ``config``: set by a technique that tunes itself, the config it actually applied (what a
    saved plan must replay); ``configs``: set by ``build_plan``, each step's applied config.
    """

    model: Any
    settings: RunSettings
    details: dict[str, Any] = field(default_factory=dict)
    compute_dtype: str = "fp32"  # which roofline ceiling applies: fp32 | bf16 | int8
    form: str = "eager"
    steps: tuple[str, ...] = ()
    config: dict[str, Any] | None = None
    configs: tuple[dict[str, Any], ...] = ()

    @property
    def name(self) -> str:
        return "+".join(self.steps) if self.steps else BASELINE

    @property
    def plan(self) -> list[dict[str, Any]]:
        """The steps as applied, ``[{"technique": name, "config": {...}}]``: ``build_plan`` replays it."""
        configs = self.configs or tuple({} for _ in self.steps)
        return [PlanStep(s, c).to_dict() for s, c in zip(self.steps, configs, strict=True)]


@dataclass(frozen=True)
class PlanStep:
    """One step of a plan: a technique's name and its config (``{}``: the technique's defaults)."""

    technique: str
    config: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"technique": self.technique, "config": dict(self.config)}


# what ``build_plan`` takes: "a+b", or steps as names, {"technique", "config"} dicts or PlanSteps
PlanSpec = str | Sequence["str | Mapping[str, Any] | PlanStep"]


def plan_steps(plan: PlanSpec) -> list[PlanStep]:
    """The steps of ``plan``, the baseline's names dropped; ConfigError for a step of another shape."""
    raw = plan.split("+") if isinstance(plan, str) else list(plan)
    steps = []
    for step in raw:
        if isinstance(step, PlanStep):
            steps.append(step)
        elif isinstance(step, str):
            steps.append(PlanStep(step.strip()))
        elif isinstance(step, Mapping) and isinstance(step.get("technique"), str) \
                and isinstance(step.get("config", {}), Mapping):
            extra = sorted(set(step) - {"technique", "config"})
            if extra:
                raise ConfigError(f"plan step {dict(step)!r}: unknown keys {extra}; a step has 'technique' and 'config'")
            steps.append(PlanStep(step["technique"].strip(), dict(step.get("config") or {})))
        else:
            raise ConfigError(f"plan step {step!r}: expected a technique name or "
                              "{'technique': name, 'config': {...}}")
    return [s for s in steps if s.technique and s.technique not in BASELINE_ALIASES]


ApplyFn = Callable[..., "Built | tuple[Any, RunSettings]"]


@dataclass(frozen=True)
class Technique:
    """The descriptor of one named variant.

    ``needs``: capabilities the workload must offer (``Workload.offers()``);
    ``accepts``: the forms (see FORMS) of model it can be applied to;
    ``produces``: the form it leaves (None: unchanged);
    ``voids``: effects of earlier steps it makes void, e.g. ONNX Runtime voids torch autocast;
    ``effects``: what it sets that a later step could void;
    ``objectives``: which search objectives it can help (unstructured pruning: size only);
    ``available``: a machine check returning why not, or None;
    ``config``: the Config dataclass the technique's apply takes as its third argument (None:
    it takes none); a plan step's ``{}`` means that class's defaults.
    """

    name: str
    group: str
    apply: ApplyFn
    description: str = ""
    needs: frozenset[str] = frozenset()
    accepts: frozenset[str] = frozenset({"eager"})
    produces: str | None = None
    effects: frozenset[str] = frozenset()
    voids: frozenset[str] = frozenset()
    objectives: frozenset[str] = frozenset(OBJECTIVES)
    compute_dtype: str = "fp32"
    expensive: bool = False  # trains (distillation, fine-tuning): the search runs it last
    saveable: bool = True  # round-trips through accelkit.save/load
    available: Callable[[], str | None] | None = None
    module: str = ""
    config: type[Config] | None = None

    def missing(self, workload: Workload) -> list[str]:
        return sorted(self.needs - set(workload.offers()))

    def applies_to(self, workload: Workload) -> bool:
        return not self.missing(workload) and unavailable_reason(self) is None


TECHNIQUES: dict[str, Technique] = {}


def register_technique(
    name: str,
    *,
    group: str,
    description: str,
    needs: Sequence[str] = (),
    accepts: Sequence[str] = ("eager",),
    produces: str | None = None,
    effects: Sequence[str] = (),
    voids: Sequence[str] = (),
    objectives: Sequence[str] = OBJECTIVES,
    compute_dtype: str = "fp32",
    expensive: bool = False,
    saveable: bool = True,
    available: Callable[[], str | None] | None = None,
    config: type[Config] | None = None,
) -> Callable[[ApplyFn], ApplyFn]:
    """Decorator registering ``fn(model, ctx) -> Built`` (or ``(model, settings)``) as ``name``;
    with ``config=SomeConfig``, ``fn(model, ctx, config)`` gets each plan step's validated config.

    Registering a name twice is an error: two modules must not silently fight over one name.
    """
    if group not in GROUPS:
        raise ConfigError(f"technique {name!r}: group={group!r}, expected one of {GROUPS}")
    bad = sorted({*accepts, *([produces] if produces else [])} - _ALL_FORMS)
    if bad:
        raise ConfigError(f"technique {name!r}: unknown forms {bad}, expected some of {FORMS}")
    if compute_dtype not in ("fp32", "bf16", "int8"):
        raise ConfigError(f"technique {name!r}: compute_dtype={compute_dtype!r}, expected fp32, bf16 or int8")

    def deco(fn: ApplyFn) -> ApplyFn:
        if name in TECHNIQUES:
            raise ConfigError(
                f"technique {name!r} is registered twice ({TECHNIQUES[name].module} and {fn.__module__}); "
                "rename one"
            )
        TECHNIQUES[name] = Technique(
            name, group, fn, description, frozenset(needs), frozenset(accepts), produces, frozenset(effects),
            frozenset(voids), frozenset(objectives), compute_dtype, expensive, saveable, available, fn.__module__,
            config,
        )
        return fn

    return deco


def unregister_technique(name: str) -> None:
    """Remove ``name`` (tests register throwaway techniques)."""
    TECHNIQUES.pop(name, None)


_loaded = False


def _load_technique_modules() -> None:
    """Import every module of ``accelkit.techniques`` once, for the side effect of registration:
    a new technique is one new module and nothing else."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import_package_modules(__file__, "accelkit.techniques", recursive=True)


def needs_package(module: str, install: str) -> Callable[[], str | None]:
    """An ``available=`` check: why not, when ``module`` does not import here."""

    def check() -> str | None:
        from accelkit._lazy import is_available

        return None if is_available(module) else f"{module} is not installed (pip install {install})"

    return check


def unavailable_reason(technique: Technique) -> str | None:
    return technique.available() if technique.available else None


def list_techniques(workload: Workload | None = None) -> list[Technique]:
    """Descriptors of the techniques that apply to ``workload`` (all when None), by name."""
    _load_technique_modules()
    return [t for n, t in sorted(TECHNIQUES.items()) if workload is None or t.applies_to(workload)]


def get_technique(name: str, workload: Workload | None = None) -> Technique:
    """The descriptor of ``name``; UnknownVariantError naming why it does not apply to ``workload``."""
    _load_technique_modules()
    tech = TECHNIQUES.get(name)
    wl_name = getattr(workload, "name", "?")
    if tech is None:
        raise UnknownVariantError(
            f"variant {name!r} is not available: no technique has that name; "
            f"run `accelkit bench --workload {wl_name} --list` to see the names"
        )
    if workload is not None:
        missing = tech.missing(workload)
        if missing:
            raise UnknownVariantError(
                f"variant {name!r} is not available for workload {wl_name!r}: it needs {', '.join(missing)}, "
                f"which the workload does not offer; run `accelkit bench --workload {wl_name} --list`"
            )
        reason = unavailable_reason(tech)
        if reason:
            raise UnknownVariantError(f"variant {name!r} is not available on this machine: {reason}")
    return tech


# What a composition problem is about. "group-order" and "same-group" are the search's own shape
# (one technique per group, groups in order); the others are real incompatibilities.
ProblemKind = Literal["unknown", "objective", "group-order", "same-group", "form", "voids"]


@dataclass(frozen=True)
class CompositionProblem:
    """Why a composition cannot work: ``kind`` for code to decide on, ``text`` for the user."""

    kind: ProblemKind
    text: str

    @property
    def search_shape(self) -> bool:
        """A rule of the search space (group order, one per group), not an incompatibility."""
        return self.kind in ("group-order", "same-group")


def composition_error(steps: Sequence[str], *, objective: str | None = None, search: bool = False) -> str | None:
    """Why the ``+``-joined ``steps`` cannot work (or would do nothing), or None when they can."""
    problem = composition_problem(steps, objective=objective, search=search)
    return problem.text if problem else None


def composition_problem(
    steps: Sequence[str], *, objective: str | None = None, search: bool = False
) -> CompositionProblem | None:
    """Why the ``+``-joined ``steps`` cannot work (or would do nothing), or None when they can.

    Read from the descriptors only: each step must be applied to a form it accepts, and no
    step may void what an earlier one did. ``search=True`` adds the search's own rules: at most
    one technique per group, groups in order, each step helping ``objective``.
    """
    _load_technique_modules()
    unknown = [s for s in steps if s not in TECHNIQUES]
    if unknown:
        return CompositionProblem("unknown", f"unknown technique {unknown[0]!r}")
    techs = [TECHNIQUES[s] for s in steps]
    rank = {g: i for i, g in enumerate(GROUPS)}
    form, form_by, effects = "eager", "the baseline", {}  # effect → the step that set it
    for i, t in enumerate(techs):
        prev = techs[i - 1] if i else None
        if search and objective is not None and objective not in t.objectives:
            return CompositionProblem(
                "objective", f"{t.name} does not help {objective} (it helps {', '.join(sorted(t.objectives))})")
        if search and prev is not None and rank[t.group] <= rank[prev.group]:
            if t.group == prev.group:
                return CompositionProblem("same-group", f"{prev.name} and {t.name} are both {t.group} techniques; "
                                                        "a plan takes one of each group")
            return CompositionProblem("group-order", f"{t.name} ({t.group}) goes before {prev.name} ({prev.group}) "
                                                     "in a plan")
        if form not in t.accepts:
            return CompositionProblem("form", f"{t.name} applies to {'/'.join(sorted(t.accepts))} models, and after "
                                              f"{form_by} the model is {form}")
        voided = sorted(set(effects) & t.voids)
        if voided:
            return CompositionProblem("voids", f"{t.name} voids the {voided[0]} that {effects[voided[0]]} set: "
                                               "that step would do nothing")
        if t.produces:
            form, form_by = t.produces, t.name
        effects.update({e: t.name for e in t.effects})
    return None


def _step_config(tech: Technique, given: Mapping[str, Any]) -> Config | None:
    """The validated config a plan step hands ``tech`` (its defaults for ``{}``); ConfigError
    naming an unknown key and the valid ones, or a config given to a technique that takes none."""
    if tech.config is None:
        if given:
            raise ConfigError(f"plan step {tech.name!r}: it takes no config, got keys {sorted(given)}; "
                              "give it {} or leave the config out")
        return None
    try:
        return tech.config.from_dict(given)
    except ConfigError as exc:
        raise ConfigError(f"plan step {tech.name!r}: {exc}") from exc
    except TypeError as exc:  # a value of the wrong shape for a field
        raise ConfigError(f"plan step {tech.name!r}: {tech.config.__name__} cannot take {dict(given)!r} "
                          f"({exc})") from exc


def build_plan(
    plan: PlanSpec,
    baseline: nn.Module,
    settings: RunSettings,
    workload: Workload,
    *,
    max_quality_drop: float | None = None,
    objective: str = "throughput",
) -> Built:
    """Apply ``plan``'s techniques left to right to a copy of ``baseline``, each with its config.

    ``plan`` is ``"a+b"`` (every step at its defaults) or a list of steps, each a name, a
    ``{"technique": name, "config": {...}}`` dict or a ``PlanStep``; the built record's ``plan``
    holds the configs actually applied. The baseline is never modified. UnknownVariantError for a
    name that does not resolve or a composition the descriptors rule out; ConfigError for a bad config.
    """
    raw = plan.split("+") if isinstance(plan, str) else list(plan)
    steps = plan_steps(plan)
    label = plan if isinstance(plan, str) else "+".join(s.technique for s in steps)
    if not [s for s in raw if not isinstance(s, str) or s.strip()]:
        raise UnknownVariantError(f"variant {label!r} is empty; name one, e.g. 'bf16' or 'dynamic-padding+bf16'")
    techs = [get_technique(s.technique, workload) for s in steps]
    names = tuple(s.technique for s in steps)
    why = composition_error(names) if len(names) > 1 else None
    if why:
        raise UnknownVariantError(f"variant {label!r} cannot be built: {why}")
    configs = [_step_config(t, s.config) for t, s in zip(techs, steps, strict=True)]
    built = Built(copy.deepcopy(baseline), settings)
    applied: list[dict[str, Any]] = []
    for i, (t, config) in enumerate(zip(techs, configs, strict=True)):
        ctx = BuildContext(workload, built.settings, max_quality_drop, objective, names[:i])
        out = t.apply(built.model, ctx) if config is None else t.apply(built.model, ctx, config)
        chosen = out.config if isinstance(out, Built) else None
        if isinstance(out, Built):
            model, new_settings, details, dtype = out.model, out.settings, out.details, out.compute_dtype
        else:
            (model, new_settings), details, dtype = out, {}, t.compute_dtype
        built.details.update(details or {})
        if dtype != "fp32":
            built.compute_dtype = dtype
        built.model, built.settings = model, new_settings
        built.form = t.produces or built.form
        applied.append(dict(chosen) if chosen is not None else config.to_dict() if config is not None else {})
    built.steps, built.configs = names, tuple(applied)
    return built
