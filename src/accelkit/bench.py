"""``bench``: measure named variants of a workload side by side against its baseline.

Every variant is built from a copy of the same fp32 model, scored on the same
held-out data against the baseline's outputs, then all are timed interleaved
(A B C A B C …) so the quoted speed-up is the median of per-round ratios.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from accelkit.errors import ConfigError, DeviceUnavailableError
from accelkit.measure import (
    compare_interleaved,
    count_parameters,
    peak_memory_mb,
    serialized_size_mb,
)
from accelkit.measure.roofline import measure_roofline
from accelkit.quality_floors import check_floor_metrics, check_quality_floors
from accelkit.report.results import Results, VariantResult, describe_error
from accelkit.runtimes.base import Runtime
from accelkit.techniques.registry import BASELINE, BASELINE_ALIASES
from accelkit.variants import Built, build_variant, check_variants, list_variants
from accelkit.verdict import judge
from accelkit.workloads import RunSettings, Workload, get_workload

__all__ = ["bench", "check_device", "SearchOptions", "BenchTask", "TASKS", "available_tasks", "task_runner"]


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


@dataclass
class SearchOptions:
    """What only a search (``accelkit optimize``) hands ``bench``.

    ``objective`` reaches the techniques that tune themselves; ``split="calib"`` scores on the
    calibration split, so a search screens candidates without touching the held-out data;
    ``data`` overrides the split with items of the caller's choice (a representative screening
    sample); variants in ``prebuilt`` are measured as they are, not built again.
    """

    objective: str = "throughput"
    split: str = "eval"
    data: Any = None
    prebuilt: dict[str, Built] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.split not in ("eval", "calib"):
            raise ConfigError(f"split={self.split!r}: expected 'eval' or 'calib'")


@dataclass
class _Budget:
    """The user's quality budget, judged once per candidate where it is measured."""

    max_quality_drop: float | None
    min_quality: dict[str, float] | None

    @property
    def given(self) -> bool:
        return self.max_quality_drop is not None or bool(self.min_quality)

    def judge(self, rec: VariantResult) -> None:
        rec.verdict = judge(quality=rec.quality, quality_drop=rec.quality_drop, error=rec.error,
                            max_quality_drop=self.max_quality_drop, min_quality=self.min_quality)
        if rec.error is None:
            rec.meets_budget = rec.verdict.within_budget if self.given else None
            if rec.verdict.floors_missed:
                rec.details["floors_missed"] = list(rec.verdict.floors_missed)


@dataclass
class _Reference:
    """The baseline's pass over the measured data, which every variant is scored against."""

    wl: Workload
    data: Any
    settings: RunSettings
    outputs: Any
    quality: dict[str, float]
    n_items: int
    count_flops: bool

    def measure(self, rec: VariantResult, variant: Built) -> None:
        """Score ``variant`` into ``rec``: quality against the reference, size, FLOPs."""
        vmodel, vsettings = variant.model, variant.settings
        outputs, n_flops = _flops_of_pass(lambda: self.wl.predict(vmodel, self.data, vsettings), self.count_flops)
        rec.quality = self.wl.quality(outputs, self.outputs, self.data)
        # a runtime that serves a one-off call otherwise (before settling) is scored that way too,
        # and the worse kept: the reported quality then holds for any call, not only the long run
        unsettled = vmodel.before_settling() if isinstance(vmodel, Runtime) else None
        if unsettled is not None:
            settled = rec.quality
            before = self.wl.quality(self.wl.predict(unsettled, self.data, vsettings), self.outputs, self.data)
            rec.quality = self.wl.worse_quality(settled, before)
        rec.quality_drop = self.wl.quality_drop(rec.quality, self.quality)
        rec.size_mb = serialized_size_mb(vmodel)
        rec.params = count_parameters(vmodel) if isinstance(vmodel, torch.nn.Module) else None
        rec.flops_per_item = n_flops / self.n_items if n_flops else None
        rec.compute_dtype = variant.compute_dtype
        rec.plan = variant.plan
        # techniques report what they decided (kept layers, thresholds, curves) here
        rec.details = {k: v for k, v in variant.details.items() if k != "build_s"}
        if unsettled is not None:
            rec.details.update(quality_settled=settled, quality_before_settling=before)


def _build(name: str, model: torch.nn.Module, ref: _Reference, rec: VariantResult, search: SearchOptions,
           max_quality_drop: float | None) -> Built:
    """The variant ``name``: the search's prebuilt one, else built now (its build time into ``rec``)."""
    if name in search.prebuilt:
        variant = search.prebuilt[name]
        rec.build_s = variant.details.get("build_s")
        return variant
    start = time.perf_counter()
    variant = build_variant(name, model, ref.settings, ref.wl, max_quality_drop=max_quality_drop,
                            objective=search.objective)
    rec.build_s = time.perf_counter() - start
    return variant


def _time_all(records: dict[str, VariantResult], runners: dict[str, Callable[[], Any]], ref: _Reference,
              n_batches: int, *, repeats: int, warmup: int, memory: bool, say: Callable[[str], None],
              roofline_device: str | None, openvino: bool) -> Any:
    """Time every runner interleaved into its record; the machine's roofline (None when not measured)."""
    def ceiling() -> Any:
        return measure_roofline(size=512, repeats=3, device=roofline_device, openvino=openvino)

    peak_before = ceiling() if roofline_device else None
    say(f"timing {len(runners)} variants interleaved, {repeats} rounds")
    timings = compare_interleaved(
        runners, baseline=BASELINE, repeats=repeats, warmup=warmup,
        on_step=lambda n, r: say(f"round {r + 1}/{repeats}: {n}"),
    )
    # measured before and after timing, best of both: one busy moment must not lower the ceiling
    peak = peak_before.best(ceiling()) if peak_before else None
    for name, t in timings.items():
        rec = records[name]
        pass_s = t.p50_ms / 1e3
        rec.speedup = t.speedup
        rec.pair_ratios = [round(r, 4) for r in t.pair_ratios]
        rec.pass_ms = {"p50": t.p50_ms, "p95": t.p95_ms}
        rec.latency_ms = {"p50": t.p50_ms / n_batches, "p95": t.p95_ms / n_batches}
        rec.throughput = ref.n_items / pass_s if pass_s > 0 else None
        rec.throughput_unit = f"{ref.wl.item_unit}/s"
        rec.peak_memory_mb = peak_memory_mb(runners[name]) if memory else None
        if peak is not None and rec.flops_per_item:
            rec.roofline_fraction = peak.fraction(rec.flops_per_item * ref.n_items, pass_s, rec.compute_dtype)
    return peak


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
    keep_built: bool = False,
    search: SearchOptions | None = None,
) -> Results:
    """Measure ``variants`` (names, ``+`` for compositions) beside ``baseline``.

    A variant that fails to build or run is recorded with its ``error``; the others go on.
    ``memory``/``flops`` off skip the extra memory-sampling pass and the FLOP count (a
    search screening many candidates needs neither).

    ``min_quality`` floors any quality metric (``{"cosine_min": 0.97}``): a variant below one misses
    the budget, as one over ``max_quality_drop`` does; each variant's ``verdict`` says whether it
    is within budget and why not, and ``details["floors_missed"]`` which floors it missed.
    ``max_quality_drop`` reaches the techniques that tune themselves. ``keep_built=True`` hands
    every built variant back in ``Results.built`` (not serialized), so a caller can save the
    winner. ``search``: what only a search sets (objective, screening data, prebuilt variants).
    """
    check_device(device)
    search = search or SearchOptions()
    wl = get_workload(workload) if isinstance(workload, str) else workload
    names = list(variants) if variants is not None else list_variants(wl)
    names = [n for n in names if n not in BASELINE_ALIASES]
    check_variants(names, wl)
    budget = _Budget(max_quality_drop, check_quality_floors(min_quality))  # before the model loads
    say = progress or (lambda msg: None)

    say(f"loading {wl.name}")
    model = (baseline_model or wl.build_model()).to(device)
    data = search.data
    if data is None:
        data = wl.eval_data(limit) if search.split == "eval" else wl.calib_data(limit)
    base_settings = wl.default_settings(batch_size, device)
    n_batches = sum(1 for _ in wl.batches(data, base_settings))

    say("baseline: reference outputs")
    reference, base_flops = _flops_of_pass(lambda: wl.predict(model, data, base_settings), flops)
    base_quality = wl.quality(reference, reference, data)
    check_floor_metrics(budget.min_quality, base_quality, wl.name)
    ref = _Reference(wl, data, base_settings, reference, base_quality, wl.n_items(data), flops)
    base = VariantResult(BASELINE, quality=base_quality, quality_drop=0.0, size_mb=serialized_size_mb(model),
                         params=count_parameters(model),
                         flops_per_item=base_flops / ref.n_items if base_flops else None)
    budget.judge(base)
    records: dict[str, VariantResult] = {BASELINE: base}
    runners: dict[str, Callable[[], Any]] = {BASELINE: lambda: wl.predict(model, data, base_settings)}
    generators = {BASELINE: (model, base_settings)}  # what a variant runs with: its first token is timed
    built: dict[str, Built] = {}
    forms: set[str] = set()

    for name in names:
        say(f"{name}: build + quality")
        rec = records[name] = VariantResult(name)
        try:
            variant = _build(name, model, ref, rec, search, max_quality_drop)
            forms.add(variant.form)
            ref.measure(rec, variant)
            if keep_built:
                variant.details.setdefault("build_s", rec.build_s)
                built[name] = variant
            runners[name] = lambda m=variant.model, s=variant.settings: wl.predict(m, data, s)
            generators[name] = (variant.model, variant.settings)
        except Exception as exc:  # a failing candidate is a result, not a crash
            from accelkit.quiet import log_exception

            log_exception(exc, f"variant {name}")  # the full trace goes to the log, one line to the table
            rec.error = describe_error(exc)
        budget.judge(rec)

    from accelkit.runtimes.openvino import OpenVinoModule

    # OpenVINO's own GEMM ceiling only when a variant runs on it
    peak = _time_all(records, runners, ref, n_batches, repeats=repeats, warmup=warmup, memory=memory, say=say,
                     roofline_device=device if roofline else None, openvino=OpenVinoModule.form in forms)
    # workloads that write text also time each variant's first token (the prompt pass)
    first_token = getattr(wl, "time_to_first_token", None) if "generate" in wl.offers() else None
    if first_token is not None:
        # the baseline is the first generator: each variant's first token against default's, pair by pair
        for name, first in first_token(generators, data).items():
            if "vs_first" in first:
                first["vs_default"] = first.pop("vs_first")
            records[name].details["time_to_first_token_ms"] = first
    _perplexities(wl, records, generators, data, say)

    from accelkit.hardware import probe

    results = Results(
        workload=wl.name,
        task="infer",
        baseline=BASELINE,
        variants=[records[BASELINE], *[records[n] for n in names]],
        machine=probe(),
        settings={**base_settings.to_dict(), "repeats": repeats, "warmup": warmup, "items": ref.n_items,
                  "split": search.split, "data": _data_report(wl, data, base_settings)},
        roofline=peak.to_dict() if peak else None,
        primary_metric=wl.primary_metric,
        higher_is_better=wl.higher_is_better,
        max_quality_drop=max_quality_drop,
        min_quality=budget.min_quality,
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    )
    results.built = built
    return results


def _perplexities(wl: Workload, records: dict[str, VariantResult], generators: dict[str, tuple[Any, RunSettings]],
                  data: Any, say: Callable[[str], None]) -> None:
    """Workloads that write text: each variant's perplexity on the held-out text and its relative
    change from the default's (``details``); a variant whose model gives no logits is left without."""
    perplexity = getattr(wl, "perplexity", None) if "generate" in wl.offers() else None
    if perplexity is None:
        return
    found = {}
    for name, (gen_model, gen_settings) in generators.items():
        say(f"{name}: perplexity")
        try:
            found[name] = perplexity(gen_model, data, gen_settings)
        except Exception as exc:  # a runtime without logits: no perplexity, never a failed variant
            from accelkit.quiet import log_exception

            log_exception(exc, f"perplexity of {name}")
            continue
        records[name].details["perplexity"] = round(found[name], 4)
    if found.get(BASELINE):
        for name, value in found.items():
            records[name].details["perplexity_change"] = round(value / found[BASELINE] - 1, 6)


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

    if task not in available_tasks():
        raise ConfigError(f"--task {task!r}: expected one of {available_tasks()}")
    module, _, fn = TASKS[task].partition(":")
    return getattr(importlib.import_module(module), fn)
