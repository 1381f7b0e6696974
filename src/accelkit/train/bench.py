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
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from accelkit._threads import thread_count
from accelkit.errors import ConfigError, UnknownVariantError
from accelkit.train.precision import autocast_context, make_grad_scaler
from accelkit.train.sampler import length_group_size, sorted_within_groups
from accelkit.train.techniques import TrainVariant, build_train_variant, get_training_technique

__all__ = [
    "TRAIN_PLANS",
    "TRAIN_VARIANTS",
    "TrainVariant",
    "bench_train_model",
    "bench_train_task",
    "bench_train_variants",
    "list_model_train_variants",
    "list_train_variants",
]


# each variant is a plan of registered training techniques (accelkit.train.techniques), applied in
# order from fp32 eager; the names are what --variants takes
TRAIN_PLANS: dict[str, list[str | dict[str, Any]]] = {
    "fp32": [],
    "bf16": ["autocast"],
    "fp16": [{"technique": "autocast", "config": {"dtype": "fp16"}}],
    "fused": ["fused-adamw"],
    "compile": ["compile"],
    "channels-last": ["channels-last"],
    "bf16+compile+fused": ["autocast", "compile", "fused-adamw"],
    "bf16-weights+compile+fused": ["autocast", "bf16-weights", "compile", "fused-adamw"],
    "grouped": ["length-grouping"],
    "bf16+compile+fused+grouped": ["autocast", "compile", "fused-adamw", "length-grouping"],
    "bf16-weights+compile+fused+grouped": ["autocast", "bf16-weights", "compile", "fused-adamw", "length-grouping"],
    "bf16+compile+fused+grouped+packed-dropout": ["autocast", "compile", "fused-adamw", "length-grouping",
                                                  "packed-dropout"],
}
TRAIN_VARIANTS: dict[str, TrainVariant] = {name: build_train_variant(plan) for name, plan in TRAIN_PLANS.items()}


def _plan_needs(name: str) -> set[str]:
    """What the techniques of variant ``name`` need from the data (``TRAINING_NEEDS`` keys)."""
    steps = [s if isinstance(s, str) else s["technique"] for s in TRAIN_PLANS[name]]
    return {need for step in steps for need in get_training_technique(step).needs}


_CNN_ONLY = {n for n in TRAIN_PLANS if "images" in _plan_needs(n)}  # 4-D image inputs
_TEXT_ONLY = {n for n in TRAIN_PLANS if "lengths" in _plan_needs(n)}  # a data set with lengths


def list_train_variants(workload: str, *, runnable_only: bool = False) -> list[str]:
    """The training variants for ``workload``; ``runnable_only`` drops fp16 where the CPU has no
    native fp16 arithmetic (there it is emulated, ~50× slower than fp32: what ``all`` runs skips it)."""
    names = [n for n in TRAIN_VARIANTS if (workload == "digits" or n not in _CNN_ONLY) and n not in _TEXT_ONLY]
    if runnable_only:
        from accelkit.hardware import probe

        if not probe()["recommend"].get("fp16_on_cpu", False):
            names.remove("fp16")
    return names


def list_model_train_variants(*, runnable_only: bool = False) -> list[str]:
    """The training variants for a user's text model (``--model``): the text ones, with length groups."""
    return [*list_train_variants("text", runnable_only=runnable_only), *sorted(_TEXT_ONLY)]


def _batches(dataset, batch: int, seed: int, collate_fn: Callable | None = None,
             group_by_length: bool = False) -> Iterator[tuple[Any, Any]]:
    """An endless stream of shuffled batches; the same for every variant (same seed). A dataset
    without ``tensors`` is batched by ``collate_fn``; ``group_by_length`` sorts each run of 50
    batches' items by length (fewer on a small data set, as the Trainer groups; the batches then
    pad less)."""
    gen = torch.Generator().manual_seed(seed)
    tensors = getattr(dataset, "tensors", None)
    n = len(dataset)
    while True:
        perm = torch.randperm(n, generator=gen).tolist()
        if group_by_length:
            perm = sorted_within_groups(perm, dataset.lengths, length_group_size(n, batch))
        for start in range(0, n - batch + 1, batch):
            idx = perm[start : start + batch]
            if tensors is not None:
                yield tensors[0][idx], tensors[1][idx]
            else:
                yield collate_fn([dataset[i] for i in idx])


def _items(inputs: Any, unit: str) -> int:
    """Samples (or tokens: input elements) in a batch of inputs, a tensor or a dict of them."""
    first = next(iter(inputs.values())) if isinstance(inputs, dict) else inputs
    return int(first.numel()) if unit == "tokens" else int(first.shape[0])


def _compile_forward(model: torch.nn.Module, packed_dropout: bool = False) -> Callable[..., Any]:
    """torch.compile (inductor) of the model's forward, with attention on SDPA's math backend
    (``packed_dropout``: dropout masks from packed 16-bit draws, ``train.techniques.packed_dropout``).

    On CPU the flash-attention kernel gains nothing from bf16 (measured here: its fwd+bwd at
    B8 H8 T128 D64 is slower in bf16 than fp32); traced through the math backend, inductor
    fuses scale, mask and softmax around bf16 batched GEMMs instead (~8% of a large gpt-mini
    step). The math backend computes the same attention, so quality is unchanged.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from accelkit.train.techniques.packed_dropout import packed_dropout_masks

    def forward(*args: Any) -> Any:
        with sdpa_kernel(SDPBackend.MATH), packed_dropout_masks(packed_dropout):
            return model(*args)

    return torch.compile(forward)


def _make_step(model, loss_fn, variant: TrainVariant, lr: float, warmup_steps: int = 10) -> Callable[[Any, Any], float]:
    if variant.channels_last:
        model.to(memory_format=torch.channels_last)
    if variant.bf16_weights:
        model.to(torch.bfloat16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, fused=variant.fused or None, foreach=None if variant.fused else True)
    scaler = make_grad_scaler(variant.precision, "cpu")
    forward = _compile_forward(model, variant.packed_dropout) if variant.compile else model

    done = [0]

    def step(inputs, targets) -> float:
        # linear warm-up, then constant: early steps at full LR make the quality comparison chaotic
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (done[0] + 1) / warmup_steps)
        done[0] += 1
        if variant.channels_last and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        if variant.bf16_weights and isinstance(inputs, torch.Tensor) and inputs.is_floating_point():
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
    from accelkit.train.tasks import get_training_task

    task = get_training_task(workload, seed=seed, width=width, size=size)
    return _measure_rows(task, workload, names, [], "fp32", batch, steps_per_call, repeats, warmup, lr, seed,
                         roofline_size, progress, {"width": width, "size": size})


def bench_train_model(
    task: Any,
    names: list[str] | None = None,
    trainer_rows: list[str] | None = None,
    *,
    batch_size: int = 16,
    steps_per_call: int = 2,
    repeats: int = 10,
    warmup: int = 2,
    lr: float = 5e-5,
    seed: int = 0,
    threads: int | None = None,
    roofline_size: int = 256,
    progress: Callable[[str], None] | None = None,
) -> Any:
    """``bench_train_variants`` for a user's model (``accelkit.train.user_model.user_training_task``):
    the transformers Trainer rows (``accelkit.train.hf_trainer.TRAINER_ROWS``; ``default``, its
    defaults, is the baseline) beside accelkit's variants, interleaved, same init, equal steps.
    A row that cannot run is a row with its error; without the Trainer, fp32 is the baseline."""
    from accelkit.train.hf_trainer import TRAINER_ROWS

    available = list_model_train_variants()
    # fp16 where the CPU emulates it (~50x slower) only when asked by name, as in ``--variants all``
    names = list(list_model_train_variants(runnable_only=True) if names is None else names)
    trainer_rows = list(TRAINER_ROWS if trainer_rows is None else trainer_rows)
    unknown = [n for n in names if n not in available] + [n for n in trainer_rows if n not in TRAINER_ROWS]
    if unknown:
        raise UnknownVariantError(f"training variants {unknown} are not available for a --model; choose from "
                                  f"{[*TRAINER_ROWS, *available]}")
    if "fp32" not in names:
        names = ["fp32", *names]  # accelkit's own reference, and the baseline when the Trainer cannot run
    if "default" not in trainer_rows:
        trainer_rows = ["default", *trainer_rows]
    with thread_count(threads):
        return _measure_rows(task, task.name, names, trainer_rows, "default", batch_size, steps_per_call, repeats,
                             warmup, lr, seed, roofline_size, progress, {"task": getattr(task, "task", None)})


def _measure_rows(task, workload, names, trainer_rows, baseline, batch, steps_per_call, repeats, warmup, lr, seed,
                  roofline_size, progress, settings) -> Any:
    """Build every row from ``task``'s initial model, run one call of each (a row that fails there
    becomes an error row; it is the first of the ``warmup`` calls, so there is always one), time
    ``repeats`` rounds interleaved, then score each on held-out data."""
    from accelkit.measure import compare_interleaved
    from accelkit.measure.roofline import measure_roofline
    from accelkit.report.results import Results, VariantResult

    say = progress or (lambda msg: None)
    collate_fn = getattr(task, "collate_fn", None)
    init_state = copy.deepcopy(task.model.state_dict())
    calls, models, losses, build_s, errors, trainers = {}, {}, {}, {}, {}, {}
    elements: dict[str, list[int]] = {}  # input elements (padded tokens) of each step a row trained on

    def fresh_model() -> torch.nn.Module:
        model = copy.deepcopy(task.model)
        model.load_state_dict(init_state)
        return model.train()

    warmup_steps = 10
    for name in trainer_rows:
        start = time.perf_counter()
        try:
            model = fresh_model()
            trainers[name] = _trainer_row(task, model, name, collate_fn, batch_size=batch, lr=lr,
                                          warmup_steps=warmup_steps, seed=seed, steps_per_call=steps_per_call,
                                          max_steps=(warmup + repeats + 2) * steps_per_call)
            models[name], calls[name] = model, trainers[name].run
        except Exception as exc:  # a Trainer that cannot be built here is a row saying why
            errors[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        build_s[name] = time.perf_counter() - start
    for name in names:
        start = time.perf_counter()
        variant = TRAIN_VARIANTS[name]
        model = fresh_model()
        step = _make_step(model, task.loss_fn, variant, lr, warmup_steps)
        stream = _batches(task.dataset, batch, seed + 1, collate_fn, variant.group_by_length)
        losses[name] = []

        def run(step=step, stream=stream, record=losses[name], seen=elements.setdefault(name, [])) -> None:
            for _ in range(steps_per_call):
                x, y = next(stream)
                seen.append(_items(x, "tokens"))
                record.append(step(x, y))

        models[name], calls[name] = model, run
        build_s[name] = time.perf_counter() - start

    x0, y0 = next(_batches(task.dataset, batch, seed + 1, collate_fn))
    items_per_step = _items(x0, task.throughput_unit)
    flops = _flops_per_step(task.model, task.loss_fn, x0, y0)
    x0_elements = _items(x0, "tokens")
    say("measuring this machine's GEMM peaks")
    roof_before = measure_roofline(size=roofline_size, repeats=5)
    say(f"warming up {len(calls)} training rows (compiled ones compile now)")
    for name in list(calls):
        try:
            calls[name]()  # the first call: compile, the Trainer's optimizer and loader
        except Exception as exc:
            errors[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            del calls[name]
    if baseline not in calls:
        baseline = "fp32"  # the Trainer could not run: ratios are to accelkit's fp32 eager
    try:
        # one more warm-up call: kernel selection settles in the second
        timings = compare_interleaved(calls, baseline=baseline, repeats=repeats, warmup=max(warmup - 1, 0),
                                      on_step=lambda name, r: say(f"round {r + 1}/{repeats}: {name}"))
    finally:
        for trainer in trainers.values():
            trainer.close()
    say("measuring the GEMM peaks again, and the held-out loss of each row")
    # the peak measured before and after the timing, the higher per dtype: a peak taken while
    # another job held the cores would understate the ceiling and overstate MFU (even above 100%)
    roof = roof_before.best(measure_roofline(size=roofline_size, repeats=5))
    records = []
    base_quality = None
    for name in [*trainer_rows, *names]:
        variant = TRAIN_VARIANTS.get(name)
        details = ({"trainer_flags": _trainer_flags(name)} if variant is None else asdict(variant))
        if name in errors:
            records.append(VariantResult(name=name, error=errors[name], build_s=build_s.get(name), details=details))
            continue
        t = timings[name]
        per_call_s = t.p50_ms / 1e3
        bf16 = variant.precision == "bf16" if variant else bool(_trainer_flags(name).get("bf16"))
        dtype = "bf16" if bf16 else "fp32"
        # every row is scored in fp32: bf16 weights are upcast exactly, so this scores what it learned
        quality = task.evaluate(copy.deepcopy(models[name]).float() if variant and variant.bf16_weights
                                else models[name])
        if losses.get(name):
            tail = losses[name][-5:]
            quality["train_loss_last5"] = sum(tail) / len(tail)
        if name == baseline:
            base_quality = quality
        steps_trained = trainers[name].steps if name in trainers else len(losses[name])
        # padded lengths differ from batch to batch (and grouped rows pad less): each row's FLOPs
        # are the first batch's scaled to the mean size of the batches it trained on
        seen = trainers[name].collator.elements if name in trainers else elements.get(name)
        row_flops = flops * statistics.fmean(seen) / x0_elements if flops and seen else flops
        records.append(VariantResult(
            name=name,
            speedup=t.speedup,
            throughput=items_per_step * steps_per_call / per_call_s,
            throughput_unit=f"{task.throughput_unit}/s",
            pass_ms={"p50": t.p50_ms, "p95": t.p95_ms},
            flops_per_item=row_flops / items_per_step if row_flops else None,
            roofline_fraction=roof.fraction(row_flops * steps_per_call, per_call_s, dtype) if row_flops else None,
            compute_dtype=dtype,
            quality=quality,
            build_s=build_s[name],
            pair_ratios=t.pair_ratios,
            details={**details, "steps_trained": steps_trained,
                     "mfu_vs_fp32_peak": roof.fraction(row_flops * steps_per_call, per_call_s, "fp32")
                     if row_flops else None},
        ))
    for record in records:
        if record.error is None and base_quality is not None:
            record.quality_drop = record.quality["val_loss"] - base_quality["val_loss"]
    from accelkit.hardware import probe

    return Results(
        workload=workload, task="train", baseline=baseline, variants=records, machine=probe(),
        settings={"batch_size": batch, **settings,
                  "model_config": _model_config(task.model),
                  "steps_per_call": steps_per_call, "repeats": repeats, "warmup": warmup, "lr": lr,
                  "items_per_step": items_per_step, "flops_per_step": flops, "threads": torch.get_num_threads(),
                  "load_average_1min": os.getloadavg()[0]},
        roofline=roof.to_dict(), primary_metric="val_loss", higher_is_better=False,
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    )


def _trainer_row(task, model, name, collate_fn, **settings) -> Any:
    """The paused Trainer of row ``name`` training ``model`` (a fresh copy) on ``task``'s data: the
    transformers ``Trainer`` for text and Hugging Face image classifiers, sentence-transformers'
    ``SentenceTransformerTrainer`` with MultipleNegativesRankingLoss for sentence-embedding."""
    from accelkit.train.hf_trainer import TRAINER_ROWS, PausedTrainer

    flags = TRAINER_ROWS[name]
    kind = getattr(task, "task", None)
    if kind == "sentence-embedding":
        from accelkit.train.sentence_trainer import (
            PausedSentenceTrainer,
            sentence_transformer_around,
        )
        from accelkit.train.user_embedding import MNRL_SCALE

        source = getattr(task, "sentence_source", None)
        if source is None or getattr(task.dataset, "texts", None) is None:
            raise ConfigError("this sentence-embedding task keeps no text pairs; build it with user_training_task")
        return PausedSentenceTrainer(sentence_transformer_around(model.model, **source), task.dataset.texts,
                                     flags=flags, scale=MNRL_SCALE, **settings)
    if kind == "image-classification" and not getattr(model, "hugging_face", False):
        raise ConfigError("the Trainer rows need a Hugging Face image classifier folder (its model computes the "
                          "loss from labels); a module:function model gets accelkit's rows only")
    return PausedTrainer(model.model, task.dataset, collate_fn, flags=flags, **settings)


def _model_config(model: torch.nn.Module) -> dict | None:
    config = getattr(model, "config", None) or getattr(getattr(model, "model", None), "config", None)
    return config.to_dict() if config is not None else None


def _trainer_flags(name: str) -> dict[str, Any]:
    from accelkit.train.hf_trainer import TRAINER_ROWS

    return TRAINER_ROWS.get(name, {})


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
    model_options: dict[str, Any] | None = None,
    **_: Any,
) -> Any:
    """``accelkit bench --task train`` entry (the BenchTask signature): run, print, save.

    ``size``/``threads``/``batch_size`` as in ``bench_train_variants``; e.g. ``accelkit bench --task
    train --workload gpt-mini --size large`` prints fp32, bf16 and bf16+compile+fused side by side
    with their MFU. ``model_options`` (``--model``/``--data``...): the user's folder instead, with
    the transformers Trainer rows (``bench_train_model``).
    """
    from accelkit.errors import UnknownWorkloadError

    if model_options is not None:
        return _bench_model_task(model_options, variants, list_only, out, html, repeats, size, threads, batch_size,
                                 console)
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
    _save_and_print(results, out, html, console)
    return results


def _bench_model_task(options, variants, list_only, out, html, repeats, size, threads, batch_size, console) -> Any:
    from accelkit.train.hf_trainer import TRAINER_ROWS

    if list_only:
        print("\n".join([*TRAINER_ROWS, *list_model_train_variants()]))
        return None
    if size != "default":
        raise ConfigError("--size shapes gpt-mini; drop it with --model")
    unknown = sorted(set(options) - {"model", "data", "task", "text_column", "label_column", "calib_size"})
    if unknown:
        raise ConfigError(f"--task train --model does not take {', '.join('--' + k.replace('_', '-') for k in unknown)}")
    if variants.strip() == "all":
        names, rows = list_model_train_variants(runnable_only=True), list(TRAINER_ROWS)
    else:
        picked = [v.strip() for v in variants.split(",") if v.strip()]
        names, rows = [n for n in picked if n not in TRAINER_ROWS], [n for n in picked if n in TRAINER_ROWS]
    from rich.console import Console
    from rich.markup import escape

    from accelkit.train.user_model import user_training_task

    console = console or Console()
    with console.status("building the training rows") as status:
        task = user_training_task(**options)
        results = bench_train_model(task, names, rows, repeats=repeats, threads=threads, batch_size=batch_size or 16,
                                    progress=lambda m: status.update(escape(m)))
    _save_and_print(results, out, html, console)
    return results


def _save_and_print(results: Any, out: Path | None, html: Path | None, console: Any) -> None:
    # results first: a failure while printing must not lose the run
    if out is not None:
        from accelkit.report.results import save_results

        save_results(results, out)
    if html is not None:
        from accelkit.report.html import write_html_report

        write_html_report(results, html)
    from accelkit.report.table import print_table

    print_table(results, console)
