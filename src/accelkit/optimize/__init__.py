"""``accelkit optimize``: search techniques under a quality budget; the product's main job."""

from __future__ import annotations

from pathlib import Path

from accelkit.optimize.plans import Plan, drop_one_step, extend_plans, technique_group
from accelkit.optimize.search import (
    OptimizeConfig,
    OptimizeResult,
    choose_plan,
    objective_score,
    optimize,
)

__all__ = [
    "OptimizeConfig",
    "OptimizeResult",
    "Plan",
    "choose_plan",
    "drop_one_step",
    "extend_plans",
    "objective_score",
    "optimize",
    "run_demo",
    "technique_group",
]

# What `make demo` runs: both embedded inference workloads within ~10 minutes on 2 cores, on
# a curated candidate list (`accelkit optimize` without --candidates searches every technique).
DEMO_CONFIGS = (
    OptimizeConfig("minilm", max_quality_drop=0.01, objective="throughput", time_budget_s=240,
                   screen_limit=64, eval_limit=256, repeats=3,
                   candidates=["bf16", "dynamic-padding", "int8-aware", "int8-dynamic", "onnx", "onnx-int8-dynamic"]),
    OptimizeConfig("digits", max_quality_drop=0.005, objective="throughput", batch_size=256,
                   time_budget_s=150, screen_limit=512, repeats=5,
                   candidates=["bf16", "onnx", "onnx-int8-static", "int8-aware", "prune-structured-50", "early-exit"]),
)


def run_demo(out: str | Path = "out") -> Path:
    """Optimize minilm and digits, write out/<workload>/ and the combined out/report.html."""
    from rich.console import Console

    from accelkit.optimize.report import write_optimize_report

    console = Console()
    out = Path(out)
    runs = []
    for cfg in DEMO_CONFIGS:
        console.rule(f"optimize {cfg.workload}")
        res = optimize(cfg, out / cfg.workload, console=console)
        console.print(res.message)
        runs.append(res)
    path = write_optimize_report(runs, out / "report.html")
    console.print(f"report → {path}")
    return path
