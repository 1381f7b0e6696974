"""Training variants measured side by side: samples/s or tokens/s, and quality after equal steps.

Every variant trains its own copy of the same initial model on the same batches; calls of a
few steps are timed interleaved (A B C A B C ...), the speed-up is the median of per-round
ratios to fp32 eager, and the validation metrics after the same number of steps sit beside
it. MFU = model FLOP/s (FlopCounterMode on one fwd+bwd) / this machine's measured GEMM peak.
"""

from __future__ import annotations

import copy
import datetime as _dt
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from accelkit._threads import thread_count
from accelkit.errors import ConfigError, UnknownVariantError
from accelkit.train.precision import autocast_context, make_grad_scaler

__all__ = ["TRAIN_VARIANTS", "TrainVariant", "bench_train_task", "bench_train_variants", "list_train_variants"]


@dataclass(frozen=True)
class TrainVariant:
    precision: str = "fp32"
    compile: bool = False
    fused: bool = False  # fused AdamW (else foreach)
    channels_last: bool = False
    # weights, gradients and AdamW state held in bf16: no per-GEMM weight casts and half the
    # optimizer's memory traffic. Costs: an update under half a bf16 step of its weight (~0.4%)
    # is lost, so a long run at a small LR stalls where fp32 weights would not; the validation
    # loss beside the speed says whether this run's loss allowed it.
    bf16_weights: bool = False


TRAIN_VARIANTS: dict[str, TrainVariant] = {
    "fp32": TrainVariant(),
    "bf16": TrainVariant(precision="bf16"),
    "fp16": TrainVariant(precision="fp16"),
    "fused": TrainVariant(fused=True),
    "compile": TrainVariant(compile=True),
    "channels-last": TrainVariant(channels_last=True),
    "bf16+compile+fused": TrainVariant(precision="bf16", compile=True, fused=True),
    "bf16-weights+compile+fused": TrainVariant(precision="bf16", compile=True, fused=True, bf16_weights=True),
}
_CNN_ONLY = {"channels-last"}


def list_train_variants(workload: str, *, runnable_only: bool = False) -> list[str]:
    """The training variants for ``workload``; ``runnable_only`` drops fp16 where the CPU has no
    native fp16 arithmetic (there it is emulated, ~50× slower than fp32: what ``all`` runs skips it)."""
    names = [n for n in TRAIN_VARIANTS if workload == "digits" or n not in _CNN_ONLY]
    if runnable_only:
        from accelkit.hardware import probe

        if not probe()["recommend"].get("fp16_on_cpu", False):
            names.remove("fp16")
    return names


def _batches(dataset, batch: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """An endless stream of shuffled batches; the same for every variant (same seed)."""
    gen = torch.Generator().manual_seed(seed)
    x, y = dataset.tensors
    while True:
        perm = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x) - batch + 1, batch):
            idx = perm[start : start + batch]
            yield x[idx], y[idx]


def _compile_forward(model: torch.nn.Module) -> Callable[..., Any]:
    """torch.compile (inductor) of the model's forward, with attention on SDPA's math backend.

    On CPU the flash-attention kernel gains nothing from bf16 (measured here: its fwd+bwd at
    B8 H8 T128 D64 is slower in bf16 than fp32); traced through the math backend, inductor
    fuses scale, mask and softmax around bf16 batched GEMMs instead (~8% of a large gpt-mini
    step). The math backend computes the same attention, so quality is unchanged.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def forward(*args: Any) -> Any:
        with sdpa_kernel(SDPBackend.MATH):
            return model(*args)

    return torch.compile(forward)


def _make_step(model, loss_fn, variant: TrainVariant, lr: float, warmup_steps: int = 10) -> Callable[[Any, Any], float]:
    if variant.channels_last:
        model.to(memory_format=torch.channels_last)
    if variant.bf16_weights:
        model.to(torch.bfloat16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, fused=variant.fused or None, foreach=None if variant.fused else True)
    scaler = make_grad_scaler(variant.precision, "cpu")
    forward = _compile_forward(model) if variant.compile else model

    done = [0]

    def step(inputs, targets) -> float:
        # linear warm-up, then constant: early steps at full LR make the quality comparison chaotic
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (done[0] + 1) / warmup_steps)
        done[0] += 1
        if variant.channels_last and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        if variant.bf16_weights and inputs.is_floating_point():
            inputs = inputs.to(torch.bfloat16)
        with autocast_context(variant.precision, "cpu"):
            loss = loss_fn(forward(inputs), targets)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


def _flops_per_step(model, loss_fn, inputs, targets) -> int | None:
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with FlopCounterMode(display=False) as counter:
            loss_fn(copy.deepcopy(model)(inputs), targets).backward()
        return int(counter.get_total_flops()) or None
    except Exception:  # a model the counter cannot trace: report no MFU rather than fail
        return None


def bench_train_variants(
    workload: str = "gpt-mini",
    names: list[str] | None = None,
    *,
    batch_size: int | None = None,
    steps_per_call: int = 2,
    repeats: int = 10,
    warmup: int = 2,
    lr: float = 2e-3,
    seed: int = 0,
    width: int | None = None,
    size: str = "default",
    threads: int | None = None,
    roofline_size: int = 256,
    progress: Callable[[str], None] | None = None,
) -> Any:
    """Train every variant from the same init on the same batches, timed interleaved.

    Returns an ``accelkit.results/1`` Results with throughput (tokens/s or samples/s),
    speed-up over fp32, validation metrics after equal steps, and MFU (``roofline_fraction``,
    against the fp32 or bf16 peak the variant computes in). ``size`` picks a gpt-mini shape
    (``accelkit.train.tasks.GPT_MINI_SIZES``; "large" is GEMM-bound on CPU); ``threads`` sets
    torch's intra-op threads for the run (one is steadier on a shared machine), then restores them.
    """
    available = list_train_variants(workload)
    names = names or available
    unknown = [n for n in names if n not in available]
    if unknown:
        raise UnknownVariantError(f"training variants {unknown} are not available for {workload!r}; choose from {available}")
    if "fp32" not in names:
        names = ["fp32", *names]  # the baseline every ratio is taken against
    names = ["fp32", *[n for n in names if n != "fp32"]]
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads={threads!r}: expected an integer >= 1, or None to keep torch's setting")
    if workload == "digits":
        batch = batch_size or 256
    else:  # 8 windows of the large shape already make every GEMM 1024 rows tall
        batch = batch_size or (8 if size == "large" else 16)
    with thread_count(threads):
        return _bench_train_variants(workload, names, batch, steps_per_call, repeats, warmup, lr, seed, width, size,
                                     roofline_size, progress)


def _bench_train_variants(workload, names, batch, steps_per_call, repeats, warmup, lr, seed, width, size,
                          roofline_size, progress) -> Any:
    from accelkit.measure import compare_interleaved
    from accelkit.measure.roofline import measure_roofline
    from accelkit.report.results import Results, VariantResult
    from accelkit.train.tasks import get_training_task

    task = get_training_task(workload, seed=seed, width=width, size=size)
    init_state = copy.deepcopy(task.model.state_dict())
    models, steps, streams, losses, build_s = {}, {}, {}, {}, {}
    for name in names:
        start = time.perf_counter()
        model = copy.deepcopy(task.model)
        model.load_state_dict(init_state)
        model.train()
        models[name] = model
        steps[name] = _make_step(model, task.loss_fn, TRAIN_VARIANTS[name], lr)
        streams[name] = _batches(task.dataset, batch, seed=seed + 1)
        losses[name] = []
        build_s[name] = time.perf_counter() - start

    def call(name: str) -> Callable[[], None]:
        def run() -> None:
            for _ in range(steps_per_call):
                x, y = next(streams[name])
                losses[name].append(steps[name](x, y))

        return run

    x0, y0 = next(_batches(task.dataset, batch, seed=seed + 1))
    items_per_step = x0.numel() if task.throughput_unit == "tokens" else x0.shape[0]
    flops = _flops_per_step(task.model, task.loss_fn, x0, y0)
    say = progress or (lambda msg: None)
    say("measuring this machine's GEMM peaks")
    roof_before = measure_roofline(size=roofline_size, repeats=5)
    say(f"warming up {len(names)} training variants (compiled ones compile now)")
    # two warm-up calls: compile happens in the first, kernel selection settles in the second
    timings = compare_interleaved({n: call(n) for n in names}, baseline="fp32", repeats=repeats, warmup=warmup,
                                  on_step=lambda name, r: say(f"round {r + 1}/{repeats}: {name}"))
    say("measuring the GEMM peaks again, and the validation loss of each variant")
    # the peak measured before and after the timing, the higher per dtype: a peak taken while
    # another job held the cores would understate the ceiling and overstate MFU (even above 100%)
    roof = roof_before.best(measure_roofline(size=roofline_size, repeats=5))
    records = []
    base_quality = None
    for name in names:
        t = timings[name]
        per_call_s = t.p50_ms / 1e3
        variant = TRAIN_VARIANTS[name]
        dtype = "bf16" if variant.precision == "bf16" else "fp32"
        # every variant is scored in fp32: bf16 weights are upcast exactly, so this scores what it learned
        quality = task.evaluate(copy.deepcopy(models[name]).float() if variant.bf16_weights else models[name])
        tail = losses[name][-5:]
        quality["train_loss_last5"] = sum(tail) / len(tail)
        base_quality = base_quality or quality
        records.append(VariantResult(
            name=name,
            speedup=t.speedup,
            throughput=items_per_step * steps_per_call / per_call_s,
            throughput_unit=f"{task.throughput_unit}/s",
            pass_ms={"p50": t.p50_ms, "p95": t.p95_ms},
            flops_per_item=flops / items_per_step if flops else None,
            roofline_fraction=roof.fraction(flops * steps_per_call, per_call_s, dtype) if flops else None,
            compute_dtype=dtype,
            quality=quality,
            quality_drop=quality["val_loss"] - base_quality["val_loss"],
            build_s=build_s[name],
            pair_ratios=t.pair_ratios,
            details={**asdict(variant), "steps_trained": len(losses[name]),
                     "mfu_vs_fp32_peak": roof.fraction(flops * steps_per_call, per_call_s, "fp32") if flops else None},
        ))
    from accelkit.hardware import probe

    return Results(
        workload=workload, task="train", baseline="fp32", variants=records, machine=probe(),
        settings={"batch_size": batch, "width": width, "size": size,
                  "model_config": task.model.config.to_dict() if hasattr(task.model, "config") else None, "steps_per_call": steps_per_call, "repeats": repeats, "warmup": warmup, "lr": lr,
                  "items_per_step": items_per_step, "flops_per_step": flops, "threads": torch.get_num_threads(),
                  "load_average_1min": os.getloadavg()[0]},
        roofline=roof.to_dict(), primary_metric="val_loss", higher_is_better=False,
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    )


def bench_train_task(
    *,
    workload: str = "gpt-mini",
    variants: str = "all",
    list_only: bool = False,
    out: Path | None = None,
    html: Path | None = None,
    repeats: int = 10,
    size: str = "default",
    threads: int | None = None,
    batch_size: int | None = None,
    console: Any = None,
    **_: Any,
) -> Any:
    """``accelkit bench --task train`` entry (the BenchTask signature): run, print, save.

    ``size``/``threads``/``batch_size`` as in ``bench_train_variants``; e.g. ``accelkit bench --task
    train --workload gpt-mini --size large`` prints fp32, bf16 and bf16+compile+fused side by side
    with their MFU.
    """
    from accelkit.errors import UnknownWorkloadError

    if workload not in ("gpt-mini", "digits"):
        raise UnknownWorkloadError(f"--workload {workload!r}: --task train measures 'gpt-mini' or 'digits'")
    if list_only:
        print("\n".join(list_train_variants(workload)))
        return None
    names = (list_train_variants(workload, runnable_only=True) if variants.strip() == "all"
             else [v.strip() for v in variants.split(",") if v.strip()])
    from rich.console import Console
    from rich.markup import escape

    console = console or Console()
    with console.status("building the training variants") as status:
        results = bench_train_variants(workload, names, repeats=repeats, size=size, threads=threads,
                                       batch_size=batch_size, progress=lambda m: status.update(escape(m)))
    # results first: a failure while printing must not lose the run
    if out is not None:
        from accelkit.report.results import save_results

        save_results(results, out)
    if html is not None:
        from accelkit.report.html import write_html_report

        write_html_report(results, html)
    from accelkit.report.table import print_table

    print_table(results, console)
    return results
