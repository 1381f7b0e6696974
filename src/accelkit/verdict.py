"""The one verdict per measured candidate: within the user's quality budget or not, and why not.

``bench`` judges each candidate once, where it is measured, and stores the verdict in the
results; the search, the peers table and the reports read it instead of judging again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from accelkit.errors import SchemaError
from accelkit.quality_floors import floors_missed

__all__ = ["WITHIN_BUDGET", "Verdict", "judge"]

# the status a search shows for a candidate that passed (users and tests read this string)
WITHIN_BUDGET = "within budget"
# why a candidate is out: it failed, its primary-metric drop is over the budget, or a floor is missed
Rejection = Literal["failed", "quality-drop", "floor"]
_REJECTIONS = ("failed", "quality-drop", "floor")


@dataclass(frozen=True)
class Verdict:
    """``within_budget``: the candidate ran and keeps the budget; ``rejection`` says which rule
    it broke (None when within), ``reason`` says so to the user, ``floors_missed`` lists the
    quality floors it is below (whichever rule is reported first)."""

    within_budget: bool
    floors_missed: tuple[str, ...] = ()
    reason: str | None = None
    rejection: Rejection | None = None

    @property
    def status(self) -> str:
        """What the search's candidate table shows: the reason, or "within budget"."""
        return self.reason or WITHIN_BUDGET

    def to_dict(self) -> dict[str, Any]:
        return {"within_budget": self.within_budget, "floors_missed": list(self.floors_missed),
                "reason": self.reason, "rejection": self.rejection}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Verdict:
        """Read back from results.json; SchemaError for a field of the wrong type."""
        within, missed, reason, rejection = (d.get("within_budget"), d.get("floors_missed", []),
                                             d.get("reason"), d.get("rejection"))
        if not isinstance(within, bool) or not isinstance(missed, list) \
                or not all(isinstance(m, str) for m in missed) or not (reason is None or isinstance(reason, str)) \
                or rejection not in (None, *_REJECTIONS):
            raise SchemaError(f"verdict {dict(d)!r:.80} is not a verdict written by accelkit bench; "
                              "regenerate the results file")
        return cls(within, tuple(missed), reason, rejection)


def judge(
    *,
    quality: Mapping[str, float] | None,
    quality_drop: float | None,
    max_quality_drop: float | None,
    min_quality: Mapping[str, float] | None,
    error: str | None = None,
) -> Verdict:
    """The verdict on one candidate: a failure first, then the drop over ``max_quality_drop``,
    then the ``min_quality`` floors missed. No budget at all (both None) is within budget."""
    missed = tuple(floors_missed(quality, min_quality)) if not error else ()
    if error:
        return Verdict(False, (), f"failed: {error}", "failed")
    if max_quality_drop is not None and quality_drop is not None and quality_drop > max_quality_drop:
        return Verdict(False, missed, f"quality drop {quality_drop:.4g} > budget {max_quality_drop:g}", "quality-drop")
    if missed:
        return Verdict(False, missed, f"below the quality floor: {'; '.join(missed)}", "floor")
    return Verdict(True)
