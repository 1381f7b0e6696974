"""``OptimizeConfig``: what a search looks for (workload, budget, objective, time) and the key
under which its screened candidates may be reused on resume."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from accelkit.errors import ConfigError
from accelkit.quality_floors import check_quality_floors
from accelkit.workloads import Workload

__all__ = ["OBJECTIVES", "OptimizeConfig"]

OBJECTIVES = ("throughput", "latency", "memory", "size")


@dataclass
class OptimizeConfig:
    """What to search for. ``max_quality_drop`` is in the workload's primary metric
    (minilm: cosine_mean, so 0.01 means cosine ≥ 0.99; digits: accuracy fraction).
    ``min_quality`` adds floors on any quality metric, e.g. ``{"cosine_min": 0.97}``: the worst
    sentence, which a mean can hide; a plan below a floor is out of budget as one over the drop."""

    workload: str = "minilm"
    max_quality_drop: float = 0.01
    objective: str = "throughput"  # throughput at batch_size | latency at batch 1 | memory | size
    batch_size: int | None = None
    time_budget_s: float = 600.0
    screen_limit: int | None = 128  # at least 4 batches are screened whatever this says
    eval_limit: int | None = None
    repeats: int = 5
    finalists: int = 4
    include_expensive: bool = True
    candidates: list[str] | None = None  # restrict the single techniques searched
    min_gain: float = 1.02  # a plan must beat the baseline by this factor, or noise could pick it
    max_steps: int = 4  # longest composition tried
    max_plans_per_length: int = 12  # compositions screened per length, best estimates first
    overwrite: bool = False  # write into an out_dir holding other files (they are kept)
    # the user's own model and data (``--model``/``--data``): workload_from_model's arguments
    model: dict | None = None
    min_quality: dict[str, float] | None = None  # floors on quality metrics: {"cosine_min": 0.97}
    version: int = 3  # 3: speed-ups against the default run (sentence-transformers' batching)

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective={self.objective!r}: expected one of {OBJECTIVES}")
        if not (isinstance(self.max_quality_drop, (int, float)) and math.isfinite(self.max_quality_drop)) \
                or self.max_quality_drop < 0:
            raise ConfigError(f"max_quality_drop={self.max_quality_drop}: expected a finite number >= 0, e.g. 0.01")
        self.min_quality = check_quality_floors(self.min_quality)
        if not math.isfinite(self.time_budget_s) or self.time_budget_s <= 0:
            raise ConfigError(f"time_budget={self.time_budget_s}s: expected a positive duration, e.g. 10m")
        if self.repeats < 1 or self.finalists < 1:
            raise ConfigError(f"repeats={self.repeats}, finalists={self.finalists}: expected >= 1")

    def to_dict(self) -> dict:
        return asdict(self)

    def search_key(self) -> dict:
        """Fields that must match for screened candidates to be reused on resume (with the
        user's data file's checksum: the same path with other contents is another search)."""
        key = {k: v for k, v in self.to_dict().items()
               if k not in ("time_budget_s", "finalists", "repeats", "eval_limit", "overwrite")}
        if self.model and self.model.get("data"):
            key["data_sha256"] = _path_digest(Path(self.model["data"]))
        return key

    def make_workload(self) -> Workload:
        """The workload searched: the user's ``model`` on their data, else the named one."""
        from accelkit.workloads import resolve_workload

        return resolve_workload(self.workload, self.model)


def _path_digest(path: Path) -> str | None:
    import hashlib

    if not path.exists():
        return None
    h = hashlib.sha256()
    for f in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.relative_to(path).as_posix().encode() if f != path else b"")
        h.update(f.read_bytes())
    return h.hexdigest()
