"""CLI command groups, one module per area, each exposing ``register(app)``."""

# every command that captures library output (accelkit.quiet) offers the same switch
VERBOSE_HELP = "show libraries' own output (exporter dumps, warnings, loading bars) instead of logging it"

from pathlib import Path  # noqa: E402
from typing import Annotated, Any  # noqa: E402

import typer  # noqa: E402

# ``--model`` and ``--data``: the user's own model and data, the same options on bench, optimize
# and export (see accelkit.workloads.user_model)
ModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m", help="a Hugging Face or sentence-transformers folder, or package.module:function "
                          "returning an nn.Module (replaces --workload)")]
DataOpt = Annotated[Path | None, typer.Option(
    "--data", help="your data: .txt (one item a line), .jsonl, .csv/.tsv, a folder of images, .npy or "
                   ".safetensors; split into calibration and held-out parts")]
from accelkit.tasks import list_tasks  # noqa: E402  (imports neither torch nor transformers)

MODEL_TASKS_HELP = " | ".join(list_tasks())
TaskOpt = Annotated[str | None, typer.Option(help=f"{MODEL_TASKS_HELP} [default: from the model's config]")]
TextColumnOpt = Annotated[str | None, typer.Option(help="the text column of a .jsonl/.csv --data")]
LabelColumnOpt = Annotated[str | None, typer.Option(help="the label column of a .jsonl/.csv --data (optional)")]
CalibSizeOpt = Annotated[int | None, typer.Option(help="items of --data used for calibration [default: half, "
                                                       "at most 1024]; the rest is held out")]
OutputOpt = Annotated[str | None, typer.Option(
    "--output", help="the model output to score, e.g. pooler_output [default: by task]")]
MaxNewTokensOpt = Annotated[int | None, typer.Option(
    "--max-new-tokens", help="--task text-generation: tokens written after each prompt [default: 32]")]
DoSampleOpt = Annotated[bool, typer.Option(
    "--do-sample", help="--task text-generation: sample (the model's own generation settings) instead of greedy "
                        "decoding, seeded by --seed before each batch")]
SeedOpt = Annotated[int | None, typer.Option(
    "--seed", help="--task text-generation with --do-sample: the sampling seed [default: 0]")]
DraftOpt = Annotated[str | None, typer.Option(
    "--draft", help="--task text-generation: a smaller causal-LM folder with the model's tokenizer, for "
                    "speculative decoding")]


def model_options(model: str | None, data: Path | None, task: str | None, text_column: str | None,
                  label_column: str | None, calib_size: int | None, output: str | None, *,
                  max_new_tokens: int | None = None, draft: str | None = None, do_sample: bool = False,
                  seed: int | None = None) -> dict[str, Any] | None:
    """The ``--model`` options as workload_from_model's arguments, or None without ``--model``."""
    from accelkit.errors import ConfigError

    if seed is not None and not do_sample:
        raise ConfigError(f"--seed {seed} seeds sampling; add --do-sample or drop --seed")
    if seed is not None and seed < 0:
        raise ConfigError(f"--seed {seed}: expected a whole number ≥ 0")
    if model is None:
        if data is not None or task is not None or max_new_tokens is not None or draft is not None or do_sample:
            raise ConfigError("--data, --task, --max-new-tokens, --draft and --do-sample go with --model; pass your "
                              "model folder with --model")
        return None
    if max_new_tokens is not None and max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens {max_new_tokens}: expected a positive number of tokens to write")
    if data is None:
        raise ConfigError(f"--model {model} needs --data: a text file (one item a line), .jsonl, .csv, a folder "
                          "of images or .npy tensors to calibrate and measure on")
    found = {"model": model, "data": str(data), "task": task, "text_column": text_column,
             "label_column": label_column, "calib_size": calib_size, "output": output,
             "max_new_tokens": max_new_tokens, "draft": draft, "sample_seed": (seed or 0) if do_sample else None}
    return {k: v for k, v in found.items() if v is not None}


def resolve_workload(workload: str, options: dict[str, Any] | None) -> Any:
    """The workload a command runs (``accelkit.workloads.resolve_workload``, imported only when a
    command runs: the CLI starts without torch)."""
    from accelkit.workloads import resolve_workload as resolve

    return resolve(workload, options)
