"""``accelkit train``: train a workload, or fine-tune the user's own Hugging Face folder on their data
(``--model --data``), with the chosen accelerations, on 1 or N processes."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from accelkit.commands import DataOpt, LabelColumnOpt, ModelOpt
from accelkit.errors import ConfigError

__all__ = ["register"]


def train(
    workload: Annotated[str | None, typer.Option("--workload", "-w", help="digits | gpt-mini | package.module:function")] = None,
    model: ModelOpt = None,
    data: DataOpt = None,
    task_: Annotated[str | None, typer.Option("--task", help=(
        "with --model: text-classification | causal-lm | sentence-embedding | image-classification (default: from "
        "its config); sentence-embedding trains on (anchor, positive) pairs with sentence-transformers' "
        "MultipleNegativesRankingLoss (in-batch negatives); image-classification on a folder with a sub-folder per "
        "class, with a Hugging Face image model or a module:function nn.Module"))] = None,
    text_column: Annotated[str | None, typer.Option(help=(
        "the text column of a .jsonl/.csv --data (sentence-embedding: the anchor column, default anchor)"))] = None,
    label_column: LabelColumnOpt = None,
    positive_column: Annotated[str | None, typer.Option(help=(
        "sentence-embedding: the positive column of a .jsonl/.csv --data (default: positive); a .txt pairs "
        "consecutive lines (1+2, 3+4, ...)"))] = None,
    calib_size: Annotated[int | None, typer.Option(help="with --model: items of --data trained on (default: half, at most 1024); the rest is held out")] = None,
    max_length: Annotated[int | None, typer.Option(help="with --model: tokens per text at most (default: the model's limit)")] = None,
    group_by_length: Annotated[bool, typer.Option(help="batches of similar lengths (less padding), still shuffled")] = False,
    precision: Annotated[str, typer.Option(help="fp32 | bf16 | fp16 (fp16 uses a GradScaler)")] = "fp32",
    compile_: Annotated[bool, typer.Option("--compile/--no-compile", help="torch.compile the model")] = False,
    packed_dropout: Annotated[bool, typer.Option(help=(
        "with --compile: dropout masks from 16-bit draws packed four to a random word (cheaper on CPU; "
        "same distribution, another random stream)"))] = False,
    channels_last: Annotated[bool, typer.Option(help="channels-last memory format (CNNs)")] = False,
    optimizer: Annotated[str, typer.Option(help="adamw | sgd")] = "adamw",
    optimizer_impl: Annotated[str, typer.Option(help="auto | fused | foreach | for-loop")] = "auto",
    lr: Annotated[float, typer.Option(help="learning rate at --base-batch")] = 1e-3,
    weight_decay: Annotated[float, typer.Option()] = 0.0,
    micro_batch: Annotated[int, typer.Option(help="samples per forward per process")] = 32,
    target_batch: Annotated[int | None, typer.Option(help="effective (global) batch; sets gradient accumulation")] = None,
    base_batch: Annotated[int | None, typer.Option(help="batch --lr was tuned at (default: --target-batch)")] = None,
    lr_scaling: Annotated[str, typer.Option(help="linear | sqrt | none")] = "linear",
    epochs: Annotated[int, typer.Option()] = 1,
    max_steps: Annotated[int | None, typer.Option(help="optimizer steps (overrides --epochs)")] = None,
    warmup: Annotated[int, typer.Option(help="warm-up steps before cosine decay")] = 0,
    clip: Annotated[float | None, typer.Option(help="gradient clipping max norm")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    strategy: Annotated[str, typer.Option(help="ddp | fsdp (with --nproc > 1)")] = "ddp",
    out: Annotated[Path | None, typer.Option(help="folder for metrics.jsonl, checkpoints/ and result.json")] = None,
    checkpoint_every: Annotated[int | None, typer.Option(help="optimizer steps between checkpoints")] = None,
    resume: Annotated[bool, typer.Option(help="continue from --out's latest checkpoint")] = False,
    stop_after: Annotated[int | None, typer.Option(help="end this invocation after N steps (resume later)")] = None,
    find_batch_size: Annotated[bool, typer.Option(help="measure and use the best --micro-batch first")] = False,
    num_workers: Annotated[int, typer.Option(help="DataLoader worker processes")] = 0,
    width: Annotated[int | None, typer.Option(help="model width (digits channels, gpt-mini n_embd)")] = None,
    size: Annotated[str, typer.Option(help="gpt-mini shape: default | large (GPT_MINI_SIZES)")] = "default",
    nproc: Annotated[int, typer.Option(help="processes per node (launched with torch.distributed.run; DDP, also with --model); at most the CPU cores (GPUs)")] = 1,
    nnodes: Annotated[str, typer.Option(help="torchrun --nnodes")] = "1",
    node_rank: Annotated[int | None, typer.Option(help="torchrun --node-rank")] = None,
    rdzv_endpoint: Annotated[str | None, typer.Option(help="torchrun --rdzv-endpoint host:port")] = None,
    rdzv_id: Annotated[str | None, typer.Option(help="torchrun --rdzv-id")] = None,
    max_restarts: Annotated[int, typer.Option(help="torchrun --max-restarts (workers resume from the last checkpoint)")] = 0,
    progress: Annotated[bool, typer.Option(help="show the progress bar")] = True,
    config_json: Annotated[Path | None, typer.Option(hidden=True, help="TrainConfig JSON (used by launched workers)")] = None,
) -> None:
    """Train a workload's model, or fine-tune your own (--model --data), with each acceleration a switch;
    print loss, throughput and held-out quality."""
    from accelkit.train import TrainConfig
    from accelkit.train.checkpoint import _atomic_write_json
    from accelkit.train.distributed import LaunchConfig, launch
    from accelkit.train.loop import train as run_train
    from accelkit.train.tasks import get_training_task

    if config_json is not None:
        try:
            config = TrainConfig.from_dict(json.loads(config_json.read_text()))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--config-json {config_json}: unreadable ({exc})") from exc
    else:
        config = TrainConfig(
            precision=precision, compile=compile_, channels_last=channels_last, optimizer=optimizer,
            optimizer_impl=optimizer_impl, lr=lr, weight_decay=weight_decay, micro_batch_size=micro_batch,
            target_batch_size=target_batch, base_batch_size=base_batch, lr_scaling=lr_scaling, epochs=epochs,
            max_steps=max_steps, warmup_steps=warmup, grad_clip_norm=clip, seed=seed, device=device,
            strategy=strategy, output_dir=str(out) if out else None, checkpoint_every=checkpoint_every,
            resume=resume, stop_after_steps=stop_after, num_workers=num_workers, progress=progress,
            group_by_length=group_by_length, packed_dropout=packed_dropout,
        )
    inside_torchrun = "WORLD_SIZE" in os.environ
    if nproc > 1 and not inside_torchrun:
        from accelkit.train._dist import resolve_device_type
        from accelkit.train.distributed import check_nproc

        check_nproc(nproc, resolve_device_type(config.device))
    if model is not None:
        _check_model_options(workload, data, out, width, size)
        from transformers.utils import logging as hf_logging

        from accelkit.train.user_model import user_training_task

        hf_logging.disable_progress_bar()  # weight loading/writing bars: our progress bar is the one shown

        task = user_training_task(model, data, task=task_, text_column=text_column, label_column=label_column,
                                  positive_column=positive_column, calib_size=calib_size, max_length=max_length,
                                  seed=config.seed)
        workload = task.name
    elif workload is None:
        raise ConfigError("accelkit train needs --workload (digits, gpt-mini, package.module:function) or "
                          "--model FOLDER --data FILE")
    elif data is not None or task_ is not None or positive_column is not None:
        raise ConfigError("--data, --task and --positive-column go with --model; pass your model folder with --model")
    else:
        task = get_training_task(workload, seed=config.seed, width=width, size=size)
    config.throughput_unit = task.throughput_unit
    if find_batch_size and config_json is None:
        from accelkit.train.batch_finder import find_max_batch_size

        found = find_max_batch_size(task.model, *task.example_batch, task.loss_fn, device=config.device, precision=config.precision)
        typer.echo("batch finder: " + ", ".join(
            f"{p.batch_size}:{p.samples_per_s:,.0f}/s" if p.fits else f"{p.batch_size}:no ({p.error})" for p in found.curve
        ) + f" -> micro batch {found.batch_size}")
        best = found.batch_size
        fitting = [p for p in found.curve if p.fits and p.batch_size <= len(task.dataset)]
        if best > len(task.dataset) and fitting:  # a user's small data set: no batch larger than it
            best = max(fitting, key=lambda p: p.samples_per_s).batch_size
            typer.echo(f"note: the data has {len(task.dataset)} training items; micro batch {best}")
        config.micro_batch_size = best
        if config.target_batch_size is not None and config.target_batch_size % (best * nproc):
            config.target_batch_size = None  # the found size does not divide the target: no accumulation
            typer.echo("note: --target-batch is not a multiple of the found batch size; training without accumulation")

    if nproc > 1 and not inside_torchrun:
        launch_config = LaunchConfig(nproc_per_node=nproc, nnodes=nnodes, node_rank=node_rank, rdzv_endpoint=rdzv_endpoint,
                                     rdzv_id=rdzv_id, max_restarts=max_restarts)
        if max_restarts and not (config.output_dir and config.checkpoint_every):
            typer.echo("note: --max-restarts without --out/--checkpoint-every restarts from step 0")
        config.resume = config.resume or bool(max_restarts and config.output_dir)  # restarted workers resume
        folder = Path(config.output_dir) if config.output_dir else Path(tempfile.mkdtemp(prefix="accelkit-train-"))
        folder.mkdir(parents=True, exist_ok=True)
        config_path = folder / "train_config.json"
        _atomic_write_json(config_path, config.to_dict())
        if model is not None:  # every worker builds the same task from the same files and seed
            named = {"--model": model, "--data": data, "--task": task.task, "--text-column": text_column,
                     "--label-column": label_column, "--positive-column": positive_column,
                     "--calib-size": calib_size, "--max-length": max_length, "--out": out}
            target = ["accelkit", "train", "--config-json", str(config_path)]
            for flag, value in named.items():
                target += [flag, str(value)] if value is not None else []
        else:
            target = ["accelkit", "train", "--workload", workload, "--config-json", str(config_path)]
        if width is not None:
            target += ["--width", str(width)]
        if size != "default":
            target += ["--size", size]
        code = launch(launch_config, target, module=True)
        if code:
            raise typer.Exit(code)
        return

    from torch.utils.data import DataLoader

    collate_fn = getattr(task, "collate_fn", None)
    result = run_train(task.model, DataLoader(task.dataset, collate_fn=collate_fn) if collate_fn else task.dataset,
                       task.loss_fn, config)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    if model is not None and result.world_size > 1 and config.strategy == "fsdp":
        # FSDP left each process a shard: rank 0 scores and saves an unsharded copy holding the final
        # checkpoint's full weights (gathered by every rank when it was written)
        from accelkit.train.checkpoint import load_weights

        task = user_training_task(model, data, task=task.task, text_column=text_column, label_column=label_column,
                                  positive_column=positive_column, calib_size=calib_size, max_length=max_length,
                                  seed=config.seed)
        if result.checkpoint_path:
            load_weights(task.model, Path(result.checkpoint_path) / "model.safetensors")
    metrics = task.evaluate(task.model)
    summary = {**result.to_dict(), "validation": metrics, "workload": workload, "size": size, "width": width,
               "params": sum(p.numel() for p in task.model.parameters())}
    final = f"{result.final_loss:.4f}" if result.final_loss is not None else "n/a (nothing left to train)"
    rate = f"{result.throughput_per_s:,.0f} {result.throughput_unit}/s" if result.throughput_per_s else "n/a"
    typer.echo(
        f"{workload}: {result.steps_done}/{result.total_steps} steps, final loss {final}, {rate}, "
        f"{result.precision}, effective batch {result.effective_batch_size} = {result.micro_batch_size} x "
        f"{result.accumulation_steps} accumulation x {result.world_size} processes, lr {result.lr:.3g} "
        f"({result.lr_scaling} scaling of {result.base_lr:.3g}), skipped steps {result.skipped_steps}"
    )
    if metrics:
        typer.echo("validation: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    if model is not None:
        saved = task.save(Path(config.output_dir) / "model")
        summary.update(model=str(model), task=task.task, saved_model=str(saved), split=task.split_report)
        if (saved / "config.json").is_file():
            typer.echo(f"model -> {saved} (next: accelkit optimize --model {saved} --data ...)")
        else:  # a module:function model: its weights, for the user's function to load
            typer.echo(f"model -> {saved} (model.safetensors and classes.json; load them into your model with "
                       "accelkit.train.load_weights)")
    if config.output_dir:
        _atomic_write_json(Path(config.output_dir) / "result.json", summary)
        typer.echo(f"result -> {Path(config.output_dir) / 'result.json'}")


def _check_model_options(workload: str | None, data: Path | None, out: Path | None, width: int | None,
                         size: str) -> None:
    """One line for options that do not go with ``--model``."""
    if workload is not None:
        raise ConfigError("--model replaces --workload; pass one of them")
    if data is None:
        raise ConfigError("--model needs --data: a .jsonl/.csv of texts (with a label column for a classifier) "
                          "or a .txt, one text a line")
    if out is None:
        raise ConfigError("--model needs --out: the folder the trained model, metrics and checkpoints go to")
    if width is not None or size != "default":
        raise ConfigError("--width and --size shape the embedded workloads; drop them with --model")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
