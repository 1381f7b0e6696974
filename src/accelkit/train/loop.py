"""The training loop: any nn.Module + dataset + loss, with each acceleration a TrainConfig switch.

Buys: mixed precision, compile, channels-last, fused optimizers, gradient accumulation,
DDP/FSDP and exact checkpoint/resume without rewriting the user's loop. Costs: the
trainer owns the sample order (a resumable DistributedSampler), so it rebuilds the DataLoader.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from accelkit.errors import AccelkitError, ConfigError
from accelkit.train._dist import DistContext, init_distributed
from accelkit.train.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    model_fingerprint,
    save_checkpoint,
)
from accelkit.train.config import TrainConfig
from accelkit.train.precision import autocast_context, make_grad_scaler, scaler_skipped_step
from accelkit.train.sampler import ResumableDistributedSampler, length_group_size
from accelkit.train.schedule import lr_at_step
from accelkit.train.techniques.packed_dropout import packed_dropout_masks

__all__ = ["TrainResult", "TrainingDivergedError", "train"]


class TrainingDivergedError(AccelkitError):
    """The loss was non-finite for ``max_nonfinite_steps`` optimizer steps in a row."""


@dataclass
class TrainResult:
    """What a ``train`` call did. ``losses`` holds the steps run in this call only; the whole
    curve (including steps before a resume) is in ``metrics_path``."""

    steps_done: int  # optimizer steps completed in total (including before a resume)
    total_steps: int
    resumed_from_step: int | None
    losses: list[float]
    final_loss: float | None
    skipped_steps: int  # fp16 GradScaler overflow skips in this call
    nonfinite_steps: int  # non-finite losses skipped without a scaler in this call
    precision: str
    world_size: int
    micro_batch_size: int
    accumulation_steps: int
    effective_batch_size: int
    lr: float  # peak LR after the scaling rule
    base_lr: float
    lr_scaling: str
    throughput_per_s: float | None  # median over steps after the first, in throughput_unit
    throughput_unit: str
    wall_s: float
    metrics_path: str | None
    checkpoint_path: str | None
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- RNG state --------------------------------------------------------------------------------
def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        # numpy's state holds an ndarray, which weights_only loading refuses: store a tensor
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- building blocks --------------------------------------------------------------------------
def _make_optimizer(params: list[nn.Parameter], config: TrainConfig, lr: float, device_type: str) -> torch.optim.Optimizer:
    impl: dict[str, bool] = {}
    if config.optimizer_impl == "fused":
        impl = {"fused": True}
    elif config.optimizer_impl == "foreach":
        impl = {"foreach": True}
    elif config.optimizer_impl == "for-loop":
        impl = {"foreach": False}
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=config.betas, weight_decay=config.weight_decay, **impl)
    return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay, **impl)


def _to_device(obj: Any, device: torch.device, channels_last: bool) -> Any:
    if isinstance(obj, torch.Tensor):
        obj = obj.to(device, non_blocking=True)
        if channels_last and obj.dim() == 4 and obj.is_floating_point():
            obj = obj.contiguous(memory_format=torch.channels_last)
        return obj
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(o, device, channels_last) for o in obj)
    if isinstance(obj, dict):
        return {k: _to_device(v, device, channels_last) for k, v in obj.items()}
    return obj


def _count_items(inputs: Any, unit: str) -> int:
    first = inputs
    while isinstance(first, (list, tuple)):
        first = first[0]
    if isinstance(first, dict):
        first = next(iter(first.values()))
    if not isinstance(first, torch.Tensor):
        return 0
    return int(first.numel()) if unit == "tokens" else int(first.shape[0])


def _wrap_model(model: nn.Module, config: TrainConfig, ctx: DistContext) -> nn.Module:
    if not ctx.is_distributed:
        return model
    if config.strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        # shard each direct child that holds parameters, then the root (FSDP2 per-module units)
        for child in model.children():
            if any(p.requires_grad for p in child.parameters()):
                fully_shard(child)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def _full_model_state(model: nn.Module, config: TrainConfig, ctx: DistContext) -> dict[str, torch.Tensor]:
    if ctx.is_distributed and config.strategy == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return model.state_dict()


def _optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig, ctx: DistContext) -> dict[str, Any]:
    if ctx.is_distributed and config.strategy == "fsdp":
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_optimizer_state_dict,
        )

        return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return optimizer.state_dict()


def _load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any], config: TrainConfig, ctx: DistContext) -> None:
    if ctx.is_distributed and config.strategy == "fsdp":
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )

        set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
        return
    optimizer.load_state_dict(state)


def _rewrite_metrics(path: Path, keep_through_step: int) -> None:
    """Drop records logged after the checkpoint we resume from (they will be logged again)."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = []
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except ValueError:
            if i == len(lines) - 1:  # a kill mid-write leaves half a last line: drop it, the step is re-logged
                break
            raise CheckpointError(f"{path} line {i + 1} is not JSON; delete the file to resume without the "
                                  "earlier metrics") from None
        if not isinstance(record, dict):
            raise CheckpointError(f"{path} line {i + 1} is not a metrics record; delete the file to resume "
                                  "without the earlier metrics")
        if record.get("step", 0) <= keep_through_step:
            kept.append(line)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)


class _Progress:
    """A rich progress bar with loss, throughput and ETA; silent when disabled."""

    def __init__(self, enabled: bool, total: int, completed: int, unit: str) -> None:
        self._progress = None
        if not enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[rate]} " + unit + "/s"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        self._task = self._progress.add_task("train", total=total, completed=completed, loss="-", rate="-")
        self._progress.start()

    def update(self, loss: float, rate: float | None) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=1, loss=f"{loss:.4f}", rate=f"{rate:,.0f}" if rate else "-")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


# --- the loop ---------------------------------------------------------------------------------
def train(
    model: nn.Module,
    data: Dataset | DataLoader,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    config: TrainConfig | None = None,
    *,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``model`` on ``data`` (a Dataset of ``(inputs, targets)``, or a DataLoader whose
    dataset/collate_fn are reused) minimizing ``loss_fn(model(inputs), targets)``.

    Run under torchrun (WORLD_SIZE > 1) it joins the process group (gloo on CPU, NCCL on
    CUDA) and trains with DDP or FSDP; rank 0 alone logs and writes checkpoints.
    ``on_step(record)`` is called after each optimizer step with that step's metrics.
    """
    config = config or TrainConfig()
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"config={type(config).__name__}: expected an accelkit.train.TrainConfig")
    ctx = init_distributed(config.device)
    try:
        return _train(model, data, loss_fn, config, ctx, on_step)
    finally:
        if ctx.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


@dataclass
class _DataOrder:
    """The batches a run sees, owned by the trainer so resume and N-process runs see the same ones."""

    sampler: ResumableDistributedSampler
    loader: DataLoader
    generator: torch.Generator  # its own: creating an iterator must not draw from the global RNG
    steps_per_epoch: int
    samples_per_step: int  # per process: micro-batch × accumulation
    total_steps: int

    def epoch_batches(self, epoch: int, skip_steps: int, seed: int) -> Any:
        """An iterator over ``epoch``'s micro-batches, its first ``skip_steps`` optimizer steps skipped."""
        self.sampler.set_epoch(epoch)
        self.sampler.set_start_index(skip_steps * self.samples_per_step)
        self.generator.manual_seed(seed + epoch)
        return iter(self.loader)


def _data_order(data: Dataset | DataLoader, config: TrainConfig, ctx: DistContext, accum: int) -> _DataOrder:
    if isinstance(data, DataLoader):
        dataset, collate_fn = data.dataset, data.collate_fn
    else:
        dataset, collate_fn = data, None
    lengths = getattr(dataset, "lengths", None) if config.group_by_length else None
    if config.group_by_length and lengths is None:
        raise ConfigError("group_by_length needs a dataset with a lengths list (one per item); give the dataset "
                          "one, or set group_by_length=False")
    sampler = ResumableDistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank,
                                          shuffle=config.shuffle, seed=config.seed, lengths=lengths,
                                          group_size=length_group_size(len(dataset) // ctx.world_size,
                                                                       config.micro_batch_size))
    samples_per_step = config.micro_batch_size * accum
    steps_per_epoch = sampler.num_samples // samples_per_step
    if steps_per_epoch < 1:
        raise ConfigError(
            f"the dataset gives {sampler.num_samples} samples per process, fewer than one optimizer step "
            f"({samples_per_step}); lower target_batch_size or micro_batch_size"
        )
    generator = torch.Generator()
    loader = DataLoader(
        dataset, batch_size=config.micro_batch_size, sampler=sampler, drop_last=True,
        num_workers=config.num_workers, collate_fn=collate_fn, pin_memory=ctx.device.type == "cuda",
        generator=generator,
    )
    return _DataOrder(sampler, loader, generator, steps_per_epoch, samples_per_step,
                      config.max_steps or config.epochs * steps_per_epoch)


@dataclass
class _Trainee:
    """The model as trained (DDP/FSDP-wrapped, maybe compiled), its optimizer and loss scaler."""

    raw: nn.Module
    wrapped: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: Any  # torch.amp.GradScaler | None

    def no_sync(self, is_last_micro: bool) -> contextlib.AbstractContextManager[Any]:
        # DDP all-reduces gradients on every backward; during accumulation only the last one must
        ddp = getattr(self.wrapped, "_orig_mod", self.wrapped)
        if not is_last_micro and hasattr(ddp, "no_sync"):
            return ddp.no_sync()
        return contextlib.nullcontext()


def _resume(trainee: _Trainee, latest: Path, config: TrainConfig, ctx: DistContext, effective_batch: int,
            fingerprint: dict[str, Any]) -> int:
    """Load the checkpoint at ``latest`` into the model, optimizer, scaler and RNGs; the step it was at."""
    is_fsdp = ctx.is_distributed and config.strategy == "fsdp"
    train_state, meta = load_checkpoint(latest, None if is_fsdp else trainee.raw, fingerprint=fingerprint)
    if is_fsdp:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
        )

        from accelkit.train.checkpoint import _read_weights

        set_model_state_dict(trainee.wrapped, _read_weights(latest / "model.safetensors"),
                             options=StateDictOptions(full_state_dict=True))
    saved_optimizer = meta["config"].get("optimizer") if isinstance(meta.get("config"), dict) else None
    if saved_optimizer is not None and saved_optimizer != config.optimizer:
        # the optimizer state (moments vs momentum buffers) cannot carry over to another optimizer
        raise ConfigError(
            f"resume: the checkpoint at {latest} trained with optimizer={saved_optimizer!r}, this run asks for "
            f"{config.optimizer!r}; resume with --optimizer {saved_optimizer} or start a new output folder"
        )
    if meta.get("effective_batch_size") != effective_batch:
        raise ConfigError(
            f"resume: the checkpoint at {latest} trained with effective batch {meta.get('effective_batch_size')}, "
            f"this run asks for {effective_batch}; keep target_batch_size the same to resume"
        )
    _load_optimizer_state(trainee.wrapped, trainee.optimizer, train_state["optimizer"], config, ctx)
    if trainee.scaler is not None and train_state.get("scaler"):
        trainee.scaler.load_state_dict(train_state["scaler"])
    _set_rng_state(train_state["rng"])
    return int(meta["step"])


class _Checkpointer:
    """Writes exact-resume checkpoints (rank 0 writes; every rank joins FSDP's gather) and
    remembers the last one."""

    def __init__(self, folder: Path | None, trainee: _Trainee, config: TrainConfig, ctx: DistContext,
                 effective_batch: int, latest: Path | None, start_step: int, fingerprint: dict[str, Any]) -> None:
        self.folder, self.trainee, self.config, self.ctx = folder, trainee, config, ctx
        self.fingerprint = fingerprint
        self.effective_batch = effective_batch
        self.last = latest
        self.last_step = start_step if latest is not None else None  # known on every rank

    def save(self, step: int, epoch: int) -> None:
        if self.folder is None:
            return
        trainee, config, ctx = self.trainee, self.config, self.ctx
        model_state = _full_model_state(trainee.wrapped if config.strategy == "fsdp" else trainee.raw, config, ctx)
        optim_state = _optimizer_state(trainee.wrapped, trainee.optimizer, config, ctx)
        self.last_step = step
        if not ctx.is_main:
            return
        train_state = {
            "optimizer": optim_state,
            "scaler": trainee.scaler.state_dict() if trainee.scaler is not None else None,
            "rng": _rng_state(),
            "sampler": {"epoch": epoch, "seed": config.seed},
        }
        meta = {"effective_batch_size": self.effective_batch, "world_size": ctx.world_size, "epoch": epoch,
                "config": config.to_dict(), "model_fingerprint": self.fingerprint}
        self.last = save_checkpoint(self.folder, step=step, model_state=model_state, train_state=train_state,
                                    meta=meta, keep=config.keep_checkpoints)


class _StepGuard:
    """Steps the optimizer unless the loss or gradients are not finite (or the loss scaler skipped
    the step); counts such steps and stops a run whose loss stays non-finite."""

    def __init__(self, trainee: _Trainee, config: TrainConfig) -> None:
        self.trainee, self.config = trainee, config
        self.skipped = self.nonfinite = self.consecutive_nonfinite = 0

    def _clip(self) -> float | None:
        if self.config.grad_clip_norm is None:
            return None
        return float(torch.nn.utils.clip_grad_norm_(self.trainee.wrapped.parameters(), self.config.grad_clip_norm))

    def step(self, loss_value: float, step: int, lr: float, last_ckpt: Path | None) -> tuple[float | None, bool]:
        """(gradient norm, whether the step was skipped), after the optimizer step if it was taken."""
        optimizer, scaler = self.trainee.optimizer, self.trainee.scaler
        grad_norm = None
        was_skipped = False
        if scaler is not None:
            if self.config.grad_clip_norm is not None:
                scaler.unscale_(optimizer)
                grad_norm = self._clip()
            scale_before = scaler.get_scale()
            scaler.step(optimizer)
            scaler.update()
            was_skipped = scaler_skipped_step(scale_before, scaler)
            self.skipped += was_skipped
        elif not math.isfinite(loss_value):
            was_skipped = True
            self.nonfinite += 1
            self.consecutive_nonfinite += 1
            if self.consecutive_nonfinite >= self.config.max_nonfinite_steps:
                where = f"; the last good checkpoint is {last_ckpt}" if last_ckpt else ""
                raise TrainingDivergedError(
                    f"loss was non-finite for {self.consecutive_nonfinite} steps in a row (step {step + 1}){where}; "
                    f"lower lr (now {lr:.3g}), set grad_clip_norm, or use precision='bf16'/'fp32'"
                )
        else:
            grad_norm = self._clip()
            if grad_norm is not None and not math.isfinite(grad_norm):
                was_skipped = True  # finite loss, overflowed gradients: never step on them
                self.nonfinite += 1
                self.consecutive_nonfinite += 1
            else:
                self.consecutive_nonfinite = 0
                optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return grad_norm, was_skipped


def _forward_backward(trainee: _Trainee, batches: Any, loss_fn, config: TrainConfig, ctx: DistContext,
                      accum: int) -> tuple[float, int]:
    """One optimizer step's micro-batches forward and backward: (the step's loss averaged over
    processes, items seen by this process)."""
    device = ctx.device
    micro_losses = []
    items = 0
    for micro in range(accum):
        inputs, targets = _to_device(next(batches), device, config.channels_last)
        items += _count_items(inputs, config.throughput_unit)
        with trainee.no_sync(micro == accum - 1):
            with autocast_context(config.precision, device.type), packed_dropout_masks(config.packed_dropout):
                loss = loss_fn(trainee.wrapped(inputs), targets)
            # mean over the effective batch: each micro-batch loss is a mean over its samples
            scaled = loss.float() / accum
            (trainee.scaler.scale(scaled) if trainee.scaler is not None else scaled).backward()
        micro_losses.append(loss.detach().float())
    step_loss = torch.stack(micro_losses).mean()
    if ctx.is_distributed:
        import torch.distributed as dist

        dist.all_reduce(step_loss, op=dist.ReduceOp.SUM)
        step_loss = step_loss / ctx.world_size
    return float(step_loss), items


def _train(model, data, loss_fn, config: TrainConfig, ctx: DistContext, on_step) -> TrainResult:
    device, device_type = ctx.device, ctx.device.type
    world = ctx.world_size
    accum = config.accumulation_steps(world)
    effective_batch = config.effective_batch_size(world)
    peak_lr = config.scaled_lr(world)
    out_dir = Path(config.output_dir) if config.output_dir else None
    ckpt_dir = out_dir / "checkpoints" if out_dir else None
    order = _data_order(data, config, ctx, accum)
    total_steps = order.total_steps

    _seed_everything(config.seed)
    fingerprint = model_fingerprint(model)  # before DDP/FSDP wrap or shard it
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    wrapped = _wrap_model(model, config, ctx)
    optimizer = _make_optimizer([p for p in wrapped.parameters() if p.requires_grad], config, peak_lr, device_type)
    trainee = _Trainee(model, wrapped, optimizer, make_grad_scaler(config.precision, device_type))
    tf32_before = None
    if device_type == "cuda" and config.tf32:
        tf32_before = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    metrics_path = out_dir / "metrics.jsonl" if out_dir and ctx.is_main else None
    latest = latest_checkpoint(ckpt_dir) if (config.resume and ckpt_dir) else None
    start_step = resumed_from = None
    if latest is not None:
        start_step = resumed_from = _resume(trainee, latest, config, ctx, effective_batch, fingerprint)
        if metrics_path is not None:
            _rewrite_metrics(metrics_path, start_step)
    elif metrics_path is not None:
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        metrics_path.write_text("")
    start_step = start_step or 0
    if config.compile:
        trainee.wrapped = torch.compile(wrapped, backend=config.compile_backend, mode=config.compile_mode)
    checkpoints = _Checkpointer(ckpt_dir, trainee, config, ctx, effective_batch, latest, start_step, fingerprint)
    guard = _StepGuard(trainee, config)

    step = start_step
    epoch = step // order.steps_per_epoch
    skip_steps_in_epoch = step % order.steps_per_epoch
    losses: list[float] = []
    rates: list[float] = []
    stop_at = total_steps if config.stop_after_steps is None else min(total_steps, start_step + config.stop_after_steps)
    progress = _Progress(config.progress and ctx.is_main, total_steps, start_step, config.throughput_unit)
    metrics_fh = open(metrics_path, "a") if metrics_path is not None else None  # noqa: SIM115
    trainee.wrapped.train()
    t_start = t_prev = time.perf_counter()
    try:
        while step < stop_at:
            batches = order.epoch_batches(epoch, skip_steps_in_epoch, config.seed)
            for _ in range(skip_steps_in_epoch, order.steps_per_epoch):
                if step >= stop_at:
                    break
                lr = lr_at_step(step, peak_lr=peak_lr, total_steps=total_steps, warmup_steps=config.warmup_steps,
                                min_lr_ratio=config.min_lr_ratio)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss_value, items = _forward_backward(trainee, batches, loss_fn, config, ctx, accum)
                grad_norm, was_skipped = guard.step(loss_value, step, lr, checkpoints.last)
                step += 1
                now = time.perf_counter()
                global_items = items * world
                rate = global_items / (now - t_prev) if now > t_prev else None
                t_prev = now
                if rate and step - start_step > 1:  # the first step pays for compile and warm-up
                    rates.append(rate)
                losses.append(loss_value)
                record = {
                    "step": step, "epoch": epoch, "loss": loss_value, "lr": lr, "grad_norm": grad_norm,
                    "skipped": was_skipped, f"{config.throughput_unit}_per_s": rate,
                    "items": global_items, "time_s": now - t_start,
                }
                if trainee.scaler is not None:
                    record["loss_scale"] = trainee.scaler.get_scale()
                if metrics_fh is not None:
                    metrics_fh.write(json.dumps(record) + "\n")
                    metrics_fh.flush()
                progress.update(loss_value, rate)
                if on_step is not None:
                    on_step(record)
                if config.checkpoint_every and step % config.checkpoint_every == 0 and not was_skipped:
                    checkpoints.save(step, epoch)
            else:
                epoch += 1
                skip_steps_in_epoch = 0
                continue
            break  # stop_at reached inside the epoch
        if step > start_step and checkpoints.last_step != step:
            # every rank decides alike: FSDP gathers the full state collectively
            checkpoints.save(step, epoch)
        if ctx.is_distributed:
            import torch.distributed as dist

            dist.barrier()  # no rank leaves (and tears the group down) while another still writes
    finally:
        progress.close()
        if metrics_fh is not None:
            metrics_fh.close()
        if tf32_before is not None:
            torch.backends.cuda.matmul.allow_tf32 = tf32_before

    last_ckpt = checkpoints.last
    return TrainResult(
        steps_done=step, total_steps=total_steps, resumed_from_step=resumed_from, losses=losses,
        final_loss=losses[-1] if losses else None, skipped_steps=guard.skipped, nonfinite_steps=guard.nonfinite,
        precision=config.precision, world_size=world, micro_batch_size=config.micro_batch_size,
        accumulation_steps=accum, effective_batch_size=effective_batch, lr=peak_lr, base_lr=config.lr,
        lr_scaling=config.lr_scaling, throughput_per_s=float(np.median(rates)) if rates else None,
        throughput_unit=config.throughput_unit, wall_s=time.perf_counter() - t_start,
        metrics_path=str(metrics_path) if metrics_path else None,
        checkpoint_path=str(last_ckpt) if last_ckpt else None, config=config.to_dict(),
    )
