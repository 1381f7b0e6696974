"""``accelkit optimize``: search techniques under a quality budget; the product's main job."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from accelkit.optimize.plans import Plan, drop_one_step, extend_plans, technique_group
from accelkit.optimize.search import (
    OptimizeConfig,
    OptimizeResult,
    Shipped,
    choose_plan,
    objective_score,
    optimize,
)

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "OptimizeConfig",
    "OptimizeResult",
    "Plan",
    "Shipped",
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
    OptimizeConfig("minilm", max_quality_drop=0.01, objective="throughput", time_budget_s=300,
                   screen_limit=64, eval_limit=256, repeats=3,
                   candidates=["bf16", "bf16-cast", "int8-aware", "int8-aware-torch", "int8-dynamic", "onnx",
                               "onnx-int8-dynamic", "parallel-streams", "openvino", "openvino-bf16",
                               "openvino-int8", "static-shapes"]),
    OptimizeConfig("digits", max_quality_drop=0.005, objective="throughput", batch_size=256,
                   time_budget_s=150, screen_limit=512, repeats=5,
                   candidates=["bf16", "onnx", "onnx-int8-static", "int8-aware", "prune-structured-50", "early-exit"]),
)


def run_demo(out: str | Path = "out", console: Console | None = None) -> Path:
    """Optimize minilm and digits, write out/<workload>/ and the combined out/report.html.

    ``console`` is where progress and result lines go (the CLI passes the terminal console of
    its quiet context, so library output goes to out/log.txt)."""
    from rich.console import Console
    from rich.markup import escape

    from accelkit.optimize.report import write_optimize_report

    console = console or Console()
    out = Path(out)
    runs = []
    for cfg in DEMO_CONFIGS:
        console.rule(f"optimize {cfg.workload}")
        res = optimize(cfg, out / cfg.workload, console=console)
        console.print(escape(res.message), highlight=False)
        runs.append(res)
    path = write_optimize_report(runs, out / "report.html")
    console.print(escape(f"report → {path}"), highlight=False)
    return path
