"""``bench``: measure named variants of a workload side by side against its baseline.

Every variant is built from a copy of the same fp32 model, scored on the same
held-out data against the baseline's outputs, then all are timed interleaved
(A B C A B C …) so the quoted speed-up is the median of per-round ratios.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable
from typing import Any

import torch

from accelkit.errors import DeviceUnavailableError
from accelkit.measure import (
    compare_interleaved,
    count_parameters,
    peak_memory_mb,
    serialized_size_mb,
)
from accelkit.measure.roofline import measure_roofline
from accelkit.quality_floors import check_floor_metrics, check_quality_floors, floors_missed
from accelkit.report.results import Results, VariantResult, describe_error
from accelkit.techniques.registry import BASELINE, BASELINE_ALIASES
from accelkit.variants import Built, build_variant, check_variants, list_variants
from accelkit.workloads import RunSettings, Workload, get_workload

__all__ = ["bench", "check_device", "BenchTask", "TASKS", "available_tasks", "task_runner"]


def check_device(device: str) -> None:
    """Raise DeviceUnavailableError when ``device`` is not usable here."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceUnavailableError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceUnavailableError("--device mps: MPS is not available on this machine; use --device cpu")
    if device.split(":")[0] not in ("cpu", "cuda", "mps"):
        raise DeviceUnavailableError(f"--device {device!r}: expected cpu, cuda[:N] or mps")


def _flops_of_pass(fn: Callable[[], torch.Tensor], enabled: bool = True) -> tuple[torch.Tensor, int | None]:
    """Run ``fn`` once under the FLOP counter; fall back to a plain run if it cannot trace."""
    from torch.utils.flop_counter import FlopCounterMode

    if not enabled:
        return fn(), None
    try:
        with FlopCounterMode(display=False) as counter:
            out = fn()
        return out, int(counter.get_total_flops()) or None
    except Exception:
        return fn(), None


def _data_report(wl: Workload, data: Any, settings: RunSettings) -> dict:
    """The workload's facts about the measured data (truncated items …); never fails a bench."""
    try:
        return wl.data_report(data, settings)
    except Exception as exc:  # a report is a courtesy: its failure must not lose the measurements
        from accelkit.quiet import log_exception

        log_exception(exc, "data report")
        return {}


def bench(
    workload: str | Workload,
    variants: list[str] | None = None,
    *,
    batch_size: int | None = None,
    repeats: int = 5,
    warmup: int = 1,
    limit: int | None = None,
    device: str = "cpu",
    max_quality_drop: float | None = None,
    min_quality: dict[str, float] | None = None,
    roofline: bool = True,
    memory: bool = True,
    flops: bool = True,
    progress: Callable[[str], None] | None = None,
    baseline_model: torch.nn.Module | None = None,
    split: str = "eval",
    data: Any = None,
    prebuilt: dict[str, Built] | None = None,
    keep_built: bool = False,
    objective: str = "throughput",
) -> Results:
    """Measure ``variants`` (names, ``+`` for compositions) beside ``baseline``.

    A variant that fails to build or run is recorded with its ``error``; the others go on.
    ``memory``/``flops`` off skip the extra memory-sampling pass and the FLOP count (a
    search screening many candidates needs neither). ``split="calib"`` scores on the calibration split instead, so a search can screen
    candidates without ever touching the held-out evaluation data; ``data`` overrides the split
    with items of the caller's choice (a search's representative screening sample).

    ``min_quality`` floors any quality metric (``{"cosine_min": 0.97}``): a variant below one misses
    the budget, as one over ``max_quality_drop`` does, and ``details["floors_missed"]`` says which.
    ``max_quality_drop`` and ``objective`` reach the techniques that tune themselves. Variants in
    ``prebuilt`` are measured as they are, not built again; ``keep_built=True`` hands every
    built variant back in ``Results.built`` (not serialized), so a caller can save the winner.
    """
    check_device(device)
    wl = get_workload(workload) if isinstance(workload, str) else workload
    names = list(variants) if variants is not None else list_variants(wl)
    names = [n for n in names if n not in BASELINE_ALIASES]
    check_variants(names, wl)
    min_quality = check_quality_floors(min_quality)  # before the model loads and the baseline pass runs
    say = progress or (lambda msg: None)

    say(f"loading {wl.name}")
    model = (baseline_model or wl.build_model()).to(device)
    if split not in ("eval", "calib"):
        raise ValueError(f"split={split!r}: expected 'eval' or 'calib'")
    if data is None:
        data = wl.eval_data(limit) if split == "eval" else wl.calib_data(limit)
    base_settings = wl.default_settings(batch_size, device)
    n_items = wl.n_items(data)
    n_batches = sum(1 for _ in wl.batches(data, base_settings))
    built: dict[str, Built] = {}

    runners: dict[str, Callable[[], Any]] = {}
    records: dict[str, VariantResult] = {}
    say("baseline: reference outputs")
    reference, base_flops = _flops_of_pass(lambda: wl.predict(model, data, base_settings), flops)
    base_quality = wl.quality(reference, reference, data)
    check_floor_metrics(min_quality, base_quality, wl.name)
    budgeted = max_quality_drop is not None or bool(min_quality)
    records[BASELINE] = VariantResult(
        BASELINE,
        quality=base_quality,
        quality_drop=0.0,
        size_mb=serialized_size_mb(model),
        params=count_parameters(model),
        flops_per_item=base_flops / n_items if base_flops else None,
        meets_budget=not floors_missed(base_quality, min_quality) if budgeted else None,
    )
    runners[BASELINE] = lambda: wl.predict(model, data, base_settings)
    # workloads that write text also time the first token (the prompt pass), per variant
    first_token = getattr(wl, "time_to_first_token", None) if "generate" in wl.offers() else None
    generators = {BASELINE: (model, base_settings)}
    dtypes = {BASELINE: "fp32"}
    forms: set[str] = set()

    for name in names:
        say(f"{name}: build + quality")
        rec = VariantResult(name)
        records[name] = rec
        try:
            start = time.perf_counter()
            if prebuilt and name in prebuilt:
                variant = prebuilt[name]
                rec.build_s = variant.details.get("build_s")
            else:
                variant = build_variant(name, model, base_settings, wl, max_quality_drop=max_quality_drop,
                                        objective=objective)
                rec.build_s = time.perf_counter() - start
            vmodel, vsettings, dtype = variant.model, variant.settings, variant.compute_dtype
            forms.add(variant.form)
            outputs, n_flops = _flops_of_pass(lambda m=vmodel, s=vsettings: wl.predict(m, data, s), flops)
            rec.quality = wl.quality(outputs, reference, data)
            rec.quality_drop = wl.quality_drop(rec.quality, base_quality)
            missed = floors_missed(rec.quality, min_quality)
            if budgeted:
                rec.meets_budget = not missed and (max_quality_drop is None or rec.quality_drop <= max_quality_drop)
            rec.size_mb = serialized_size_mb(vmodel)
            rec.params = count_parameters(vmodel) if isinstance(vmodel, torch.nn.Module) else None
            rec.flops_per_item = n_flops / n_items if n_flops else None
            rec.compute_dtype = dtype
            # techniques report what they decided (kept layers, thresholds, curves) here
            rec.details = {k: v for k, v in variant.details.items() if k != "build_s"}
            if missed:
                rec.details["floors_missed"] = missed
            dtypes[name] = dtype
            if keep_built:
                variant.details.setdefault("build_s", rec.build_s)
                built[name] = variant
            runners[name] = lambda m=vmodel, s=vsettings: wl.predict(m, data, s)
            generators[name] = (vmodel, vsettings)
        except Exception as exc:  # a failing candidate is a result, not a crash
            from accelkit.quiet import log_exception

            log_exception(exc, f"variant {name}")  # the full trace goes to the log, one line to the table
            rec.error = describe_error(exc)

    on_openvino = "openvino" in forms  # OpenVINO's own GEMM ceiling only when a variant runs on it
    peak_before = measure_roofline(size=512, repeats=3, device=device, openvino=on_openvino) if roofline else None
    say(f"timing {len(runners)} variants interleaved, {repeats} rounds")
    timings = compare_interleaved(
        runners, baseline=BASELINE, repeats=repeats, warmup=warmup,
        on_step=lambda n, r: say(f"round {r + 1}/{repeats}: {n}"),
    )
    # measured before and after timing, best of both: one busy moment must not lower the ceiling
    peak = peak_before.best(measure_roofline(size=512, repeats=3, device=device, openvino=on_openvino)) \
        if peak_before else None
    for name, t in timings.items():
        rec = records[name]
        pass_s = t.p50_ms / 1e3
        rec.speedup = t.speedup
        rec.pair_ratios = [round(r, 4) for r in t.pair_ratios]
        rec.pass_ms = {"p50": t.p50_ms, "p95": t.p95_ms}
        rec.latency_ms = {"p50": t.p50_ms / n_batches, "p95": t.p95_ms / n_batches}
        rec.throughput = n_items / pass_s if pass_s > 0 else None
        rec.throughput_unit = f"{wl.item_unit}/s"
        rec.peak_memory_mb = peak_memory_mb(runners[name]) if memory else None
        if first_token is not None:
            gen_model, gen_settings = generators[name]
            rec.details["time_to_first_token_ms"] = first_token(gen_model, data, gen_settings)
        if peak is not None and rec.flops_per_item:
            rec.roofline_fraction = peak.fraction(rec.flops_per_item * n_items, pass_s, dtypes.get(name, "fp32"))

    from accelkit.hardware import probe

    results = Results(
        workload=wl.name,
        task="infer",
        baseline=BASELINE,
        variants=[records[BASELINE], *[records[n] for n in names]],
        machine=probe(),
        settings={**base_settings.to_dict(), "repeats": repeats, "warmup": warmup, "items": n_items, "split": split,
                  "data": _data_report(wl, data, base_settings)},
        roofline=peak.to_dict() if peak else None,
        primary_metric=wl.primary_metric,
        higher_is_better=wl.higher_is_better,
        max_quality_drop=max_quality_drop,
        min_quality=min_quality,
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    )
    results.built = built
    return results


# ``accelkit bench --task``: name → "module:function" taking (workload=, variants=, list_only=,
# out=, html=, repeats=). Resolved lazily so `import accelkit.bench` stays light.
BenchTask = Callable[..., Any]
TASKS: dict[str, str] = {
    "infer": "accelkit.bench:bench",
    "train": "accelkit.train.bench:bench_train_task",
    "data": "accelkit.data.bench:bench_data_task",
}


def available_tasks() -> list[str]:
    """Tasks whose module is installed in this build."""
    import importlib.util

    return [t for t, spec in TASKS.items() if importlib.util.find_spec(spec.split(":")[0]) is not None]


def task_runner(task: str) -> BenchTask:
    """The function behind ``--task``; ConfigError for a task this build does not have."""
    import importlib

    from accelkit.errors import ConfigError

    if task not in available_tasks():
        raise ConfigError(f"--task {task!r}: expected one of {available_tasks()}")
    module, _, fn = TASKS[task].partition(":")
    return getattr(importlib.import_module(module), fn)
