"""CLI for dynamic inference: ``accelkit early-exit`` and ``accelkit layer-skip`` (thin calls into the library)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from accelkit.commands import VERBOSE_HELP
from accelkit.quiet import quiet

__all__ = ["register"]


def _held_out_quality(wl, base, model, settings) -> tuple[dict[str, float], dict[str, float]]:
    """(the model's quality, the baseline's own) on the workload's evaluation data, scored against the baseline."""
    data = wl.eval_data()
    ref = wl.predict(base, data, settings)
    return wl.quality(wl.predict(model, data, settings), ref, data), wl.quality(ref, ref, data)


def register(app: typer.Typer) -> None:
    @app.command("early-exit")
    def early_exit_cmd(
        workload: str = typer.Option("digits", "--workload", "-w", help="digits | minilm"),
        budget: float | None = typer.Option(
            None, help="max quality drop on calibration data (digits: 0.005 agreement; minilm: 0.015 = cosine 0.985)"
        ),
        criterion: str | None = typer.Option(None, help="confidence | entropy | patience (digits), stability (minilm)"),
        out: Path | None = typer.Option(None, help="folder for heads.safetensors + early_exit.json"),
        verbose: bool = typer.Option(False, "--verbose", help=VERBOSE_HELP),
    ) -> None:
        """Train exit heads, calibrate thresholds for a quality budget, report held-out quality and compute saved."""
        from accelkit.techniques._workload_kinds import require_preset
        from accelkit.techniques.early_exit import (
            EARLY_EXIT_PRESETS,
            EarlyExitConfig,
            build_early_exit,
            extra_train_data,
            save_early_exit,
        )
        from accelkit.workloads import RunSettings, get_workload

        wl = get_workload(workload)
        preset = require_preset(EARLY_EXIT_PRESETS, "early exit", wl)
        config = preset["config"].to_dict()
        if criterion is not None:
            config["criterion"] = criterion
        with quiet(verbose=verbose, name="early-exit") as q:
            base = wl.build_model()
            q.phase("training exit heads and calibrating thresholds")
            model = build_early_exit(
                wl.build_model(), wl, EarlyExitConfig.from_dict(config),
                max_quality_drop=preset["max_quality_drop"] if budget is None else budget,
                train_fraction=preset["train_fraction"], batch_size=preset["batch_size"], extra_train=extra_train_data(preset, wl),
            )
            model.reset_stats()
            settings = RunSettings(batch_size=preset["batch_size"])
            q.phase("measuring quality on held-out data")
            quality, baseline_quality = _held_out_quality(wl, base, model, settings)
            details = model.accelkit_details
            report = {
                "quality": quality,
                "baseline_quality": baseline_quality,
                "compute_saved_eval": details.get("compute_saved_measured"),
                "layers_saved_eval": details.get("layers_saved_measured"),
                "thresholds": model.thresholds,
                "calibration": details.get("calibration"),
                "exit_histogram": [h["rows"] for h in details["exit_histogram"]],
            }
            q.echo(json.dumps(report, indent=1))
            if out is not None:
                save_early_exit(model, out)
                q.echo(f"saved to {out}")

    @app.command("layer-skip")
    def layer_skip_cmd(
        workload: str = typer.Option("minilm", "--workload", "-w", help="minilm"),
        budget: float = typer.Option(0.015, help="max drop of mean cosine on calibration sentences"),
        verbose: bool = typer.Option(False, "--verbose", help=VERBOSE_HELP),
    ) -> None:
        """Rank encoder layers by sensitivity and skip the least useful ones within the budget."""
        from accelkit.techniques._workload_kinds import require_preset
        from accelkit.techniques.layer_skip import (
            LAYER_SKIP_PRESETS,
            LayerSkipConfig,
            build_layer_skip,
        )
        from accelkit.workloads import get_workload

        wl = get_workload(workload)
        require_preset(LAYER_SKIP_PRESETS, "layer skipping", wl)
        with quiet(verbose=verbose, name="layer-skip") as q:
            base = wl.build_model()
            q.phase("ranking layers by sensitivity")
            model, details = build_layer_skip(wl.build_model(), wl, LayerSkipConfig(max_quality_drop=budget))
            settings = wl.default_settings()
            q.phase("measuring quality on held-out data")
            quality, baseline_quality = _held_out_quality(wl, base, model, settings)
            q.echo(json.dumps({"quality": quality, **{k: v for k, v in details.items() if k != "tradeoff_curve"}}, indent=1))

    @app.command("routed-depth")
    def routed_depth_cmd(
        workload: str = typer.Option("minilm", "--workload", "-w", help="minilm"),
        budget: float | None = typer.Option(None, help="max drop of mean cosine on held-out calibration sentences, less two standard errors (0.02)"),
        out: Path | None = typer.Option(None, help="folder for the router, thresholds and students"),
        verbose: bool = typer.Option(False, "--verbose", help=VERBOSE_HELP),
    ) -> None:
        """Route each input to a distilled shallow student or the full model; report held-out quality and layers saved.

        The first run distils the students (cached); the router is fitted on calibration sentences they never saw.
        """
        from accelkit.techniques._workload_kinds import require_preset
        from accelkit.techniques.registry import build_plan
        from accelkit.techniques.routed_depth import (
            ROUTED_DEPTH_PRESETS,
            RoutedDepthConfig,
            save_routed_depth,
        )
        from accelkit.workloads import get_workload

        wl = get_workload(workload)
        preset = require_preset(ROUTED_DEPTH_PRESETS, "routed depth", wl)
        # bad values fail here, before any model loads
        RoutedDepthConfig.from_dict({**preset["config"].to_dict(), **({} if budget is None else
                                                                        {"max_quality_drop": budget})})
        with quiet(verbose=verbose, name="routed-depth") as q:
            base = wl.build_model()
            settings = wl.default_settings()
            q.phase("distilling students (cached) and fitting the router")
            # built as bench and optimize build it: the technique applies the preset and the budget
            model = build_plan("routed-depth", base, settings, wl, max_quality_drop=budget).model
            q.phase("measuring quality on held-out data")
            quality, baseline_quality = _held_out_quality(wl, base, model, settings)
            details = model.accelkit_details
            report = {
                "quality": quality,
                "layers_saved_eval": details.get("layers_saved_measured"),
                "routes_eval": {h["path"]: h["rows"] for h in details["route_histogram"]},
                "thresholds": model.thresholds,
                "calibration": details.get("calibration"),
            }
            q.echo(json.dumps(report, indent=1))
            if out is not None:
                save_routed_depth(model, out)
                q.echo(f"saved to {out}")
