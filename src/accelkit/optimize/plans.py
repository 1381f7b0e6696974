"""Candidate plans: single techniques and the compositions the descriptors allow.

A plan is a ``+``-joined variant name applied left to right to the baseline. It takes at
most one technique of each group (structure → precision → input → runtime), each step on a
model form it accepts and none voiding an earlier one (``techniques.registry.composition_problem``);
so distil → int8 → dynamic padding → ONNX Runtime is a plan, bf16 autocast → ONNX Runtime is not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from accelkit.techniques.registry import (
    BASELINE,
    BASELINE_ALIASES,
    GROUPS,
    composition_problem,
    get_technique,
)

__all__ = ["GROUP_ORDER", "Plan", "drop_one_step", "extend_plans", "technique_group"]

GROUP_ORDER = GROUPS


def technique_group(name: str) -> str:
    """The group a technique's descriptor states (never guessed from its name)."""
    return get_technique(name).group


@dataclass(frozen=True)
class Plan:
    """An ordered list of technique names; ``name`` is what ``build_variant`` takes."""

    steps: tuple[str, ...]

    @property
    def name(self) -> str:
        return "+".join(self.steps) if self.steps else BASELINE

    @classmethod
    def parse(cls, name: str) -> Plan:
        steps = tuple(s for s in name.split("+") if s and s not in BASELINE_ALIASES)
        return cls(steps)

    def to_dict(self) -> dict:
        return {**asdict(self), "name": self.name}


def extend_plans(
    passing_plans: list[Plan], passing_singles: list[str], objective: str | None = None
) -> tuple[list[Plan], dict[str, str]]:
    """Plans one step longer than ``passing_plans``, each adding a passing single.

    Only plans that passed are extended, so a prefix that failed the budget never grows.
    Returns (plans to try, {plan name: why not} for the compositions the descriptors rule out).
    """
    out: set[Plan] = set()
    ruled_out: dict[str, str] = {}
    for plan in passing_plans:
        for single in passing_singles:
            if single in plan.steps:
                continue
            candidate = Plan((*plan.steps, single))
            problem = composition_problem(candidate.steps, objective=objective, search=True)
            if problem is None:
                out.add(candidate)
            elif not problem.search_shape:
                # group order and one-per-group shape the search space; only real incompatibilities are reported
                ruled_out[candidate.name] = problem.text
    return sorted(out, key=lambda p: p.name), ruled_out


def drop_one_step(plan: Plan) -> list[Plan]:
    """Every plan obtained by dropping one step of ``plan`` (the baseline for a single)."""
    return [Plan(plan.steps[:i] + plan.steps[i + 1 :]) for i in range(len(plan.steps))]
