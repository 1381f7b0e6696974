"""Candidate plans: single techniques and sensible compositions of them.

A plan is a ``+``-joined variant name applied left to right to the baseline.
Techniques fall into groups (structure → precision → runtime/input); a plan takes at
most one technique of each group, in that order, so compositions stay meaningful
(distil → int8 → dynamic padding → ONNX Runtime).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

__all__ = ["GROUP_ORDER", "Plan", "compose_plans", "extend_plans", "technique_group"]

# Earlier groups change the network, later ones how it runs.
GROUP_ORDER = ("structure", "precision", "input", "runtime")


def technique_group(name: str) -> str:
    """Which group a single technique belongs to, from its name."""
    if name.startswith(("prune", "distill", "depthwise", "early-exit", "layer-skip", "student")):
        return "structure"
    if name.startswith(("int8", "int4", "bf16", "fp16", "fp8", "smooth")):
        return "precision"
    if name.startswith(("dynamic-padding", "channels-last")):
        return "input"
    if name.startswith(("onnx", "compile", "tensorrt")):
        return "runtime"
    return "precision"


@dataclass(frozen=True)
class Plan:
    """An ordered list of technique names; ``name`` is what ``build_variant`` takes."""

    steps: tuple[str, ...]

    @property
    def name(self) -> str:
        return "+".join(self.steps) if self.steps else "baseline"

    @classmethod
    def parse(cls, name: str) -> Plan:
        steps = tuple(s for s in name.split("+") if s and s != "baseline")
        return cls(steps)

    def to_dict(self) -> dict:
        return {**asdict(self), "name": self.name}


def compose_plans(passing: list[str], max_steps: int = 4) -> list[Plan]:
    """Every ordered composition of ``passing`` singles with at most one per group.

    Singles that failed the budget are not in ``passing``, so no plan extends a
    prefix that already failed. Plans are ordered by length (cheap checks first).
    """
    by_group: dict[str, list[str]] = {g: [] for g in GROUP_ORDER}
    for name in passing:
        by_group[technique_group(name)].append(name)
    choices = [[None, *by_group[g]] for g in GROUP_ORDER]
    plans = []
    for combo in itertools.product(*choices):
        steps = tuple(s for s in combo if s is not None)
        if 2 <= len(steps) <= max_steps:
            plans.append(Plan(steps))
    return sorted(plans, key=lambda p: (len(p.steps), p.name))


def extend_plans(passing_plans: list[Plan], passing_singles: list[str]) -> list[Plan]:
    """Plans one step longer than ``passing_plans``: each adds a passing single of a later group.

    Only plans that passed are extended, so a prefix that failed the budget never grows.
    """
    rank = {g: i for i, g in enumerate(GROUP_ORDER)}
    out = set()
    for plan in passing_plans:
        last = rank[technique_group(plan.steps[-1])]
        for single in passing_singles:
            if rank[technique_group(single)] > last:
                out.add(Plan((*plan.steps, single)))
    return sorted(out, key=lambda p: p.name)
