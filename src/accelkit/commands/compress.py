"""CLI for compression: ``accelkit prune`` and ``accelkit distill`` (thin calls into accelkit.techniques)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from accelkit.commands import VERBOSE_HELP
from accelkit.errors import ConfigError
from accelkit.quiet import quiet

__all__ = ["register"]


def _parse_layers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError as exc:
        raise ConfigError(f"--layers {text!r}: expected comma-separated layer indices, e.g. 0,3,5") from exc


def register(app: typer.Typer) -> None:
    @app.command("prune")
    def prune_cmd(
        workload: str = typer.Option(
            "digits", "--workload", "-w", help="digits (structured/unstructured) or minilm (heads/unstructured)"
        ),
        method: str = typer.Option(
            "structured", help="structured (channels removed) | heads (attention heads removed) | unstructured (zeros)"
        ),
        ratio: float = typer.Option(
            0.5, help="fraction of channels (structured), attention heads (heads) or weights (unstructured) to remove"
        ),
        importance: str = typer.Option("magnitude", help="structured: magnitude | taylor (heads always use taylor)"),
        steps: int = typer.Option(2, help="iterative prune → fine-tune steps"),
        finetune_epochs: int = typer.Option(3, help="fine-tune epochs after each step (0: none)"),
        out: Path | None = typer.Option(None, help="folder for model.safetensors + pruned.json"),
        verbose: bool = typer.Option(False, "--verbose", help=VERBOSE_HELP),
    ) -> None:
        """Prune a workload's model, fine-tune it, report size and quality, and optionally save it."""
        from accelkit.techniques.prune import (
            FineTuneConfig,
            StructuredPruneConfig,
            UnstructuredPruneConfig,
            prune_structured,
            prune_unstructured_,
            save_pruned,
        )
        from accelkit.workloads import get_workload

        if method not in ("structured", "heads", "unstructured"):
            raise ConfigError(f"--method {method!r}: expected 'structured', 'heads' or 'unstructured'")
        if method == "heads":
            from accelkit.techniques.head_prune import HeadPruneConfig

            config = HeadPruneConfig(ratio=ratio)
        elif method == "structured":
            config = StructuredPruneConfig(ratio, importance, steps, finetune=FineTuneConfig(epochs=finetune_epochs))
        else:
            config = UnstructuredPruneConfig(amount=ratio)
        wl = get_workload(workload)
        if method == "structured" and "trainable" not in wl.offers():
            raise ConfigError(
                f"workload {wl.name!r} has no train_dataset() to fine-tune on; use --workload digits "
                "(or --method heads for a BERT encoder such as minilm)"
            )
        if method == "heads":
            if "encoder-blocks" not in wl.offers():
                raise ConfigError(f"--method heads prunes BERT-style encoders; workload {wl.name!r} is not one (use minilm)")
        with quiet(verbose=verbose, name="prune") as q:
            q.phase(f"loading {wl.name}")
            base = wl.build_model()
            model = wl.build_model()
            settings = wl.default_settings()
            data = wl.eval_data()
            q.phase(f"pruning ({method}, ratio {ratio:g}; fine-tuning where it applies)")
            if method == "heads":
                from accelkit.techniques.head_prune import cached_head_pruned_student

                model = cached_head_pruned_student(wl, model, config)
            elif method == "structured":
                example = wl.example_inputs(wl.calib_data(limit=2), settings.with_(batch_size=2))
                model = prune_structured(model, example, config, dataset=wl.train_dataset(), loss_fn=wl.loss_fn)
            else:
                prune_unstructured_(model, config)
            q.phase("measuring quality on held-out data")
            ref = wl.predict(base, data, settings)
            quality = wl.quality(wl.predict(model, data, settings), ref, data)
            details = {k: v for k, v in model.accelkit_details.items() if k != "layer_sparsity"}
            q.echo(json.dumps({"quality": quality, "baseline_quality": wl.quality(ref, ref, data), **details}, indent=1))
            if out is not None:
                if method == "unstructured":
                    raise ConfigError("--out saves structurally pruned models; unstructured keeps the original shapes")
                save_pruned(model, out, extra={"workload": wl.name})
                q.echo(f"saved to {out}")

    @app.command("distill")
    def distill_cmd(
        workload: str = typer.Option("minilm", "--workload", "-w", help="minilm | digits"),
        layers: str = typer.Option("0,3,5", help="minilm: teacher layers the student keeps"),
        epochs: int = typer.Option(3, help="minilm: distillation epochs over the calibration sentences"),
        student: str = typer.Option("distill-small", help="digits: distill-small | depthwise-separable | mobilenet-v2"),
        verbose: bool = typer.Option(False, "--verbose", help=VERBOSE_HELP),
    ) -> None:
        """Distil a smaller student (trained once, cached) and report its quality on held-out data."""
        from accelkit.workloads import get_workload

        # validate everything before loading (or training) any model
        if workload not in ("minilm", "digits"):
            raise ConfigError(f"--workload {workload!r}: distill supports minilm and digits")
        if workload == "digits" and student not in ("distill-small", "depthwise-separable", "mobilenet-v2"):
            raise ConfigError(f"--student {student!r}: expected distill-small, depthwise-separable or mobilenet-v2")
        if workload == "minilm":
            from accelkit.techniques.distill import SentenceDistillConfig, cached_sentence_student

            config = SentenceDistillConfig(keep_layers=_parse_layers(layers), epochs=epochs)
        wl = get_workload(workload)
        with quiet(verbose=verbose, name="distill") as q:
            q.phase("distilling the student (cached after the first run)")
            teacher = wl.build_model()
            settings = wl.default_settings()
            if workload == "minilm":
                model = cached_sentence_student(wl, teacher, config)
            else:
                from accelkit.variants import build_variant

                built = build_variant(student, teacher, settings, wl)
                model, settings = built.model, built.settings
            data = wl.eval_data()
            q.phase("measuring quality on held-out data")
            ref = wl.predict(teacher, data, settings)
            quality = wl.quality(wl.predict(model, data, settings), ref, data)
            details = built.details if workload != "minilm" else getattr(model, "accelkit_details", {})
            q.echo(json.dumps({"quality": quality, "details": details}, indent=1, default=str))
