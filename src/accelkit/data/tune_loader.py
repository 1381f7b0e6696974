"""DataLoader tuner: time short passes over num_workers, pin_memory, persistent_workers, prefetch_factor.

It buys loader settings measured on this machine and dataset instead of guessed;
it costs a few seconds of trial passes, once per machine + dataset (the answer is cached).
"""

from __future__ import annotations

import itertools
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from accelkit._threads import available_cpus
from accelkit.config import Config
from accelkit.data._common import (
    DATA_FORMAT_VERSION,
    atomic_write_json,
    cache_root,
    fingerprint_json,
)
from accelkit.errors import ConfigError

__all__ = [
    "LoaderTuneConfig",
    "LoaderTuneResult",
    "dataset_fingerprint",
    "machine_fingerprint",
    "measure_loader",
    "tune_loader",
]

_SEARCH = ("auto", "grid", "coordinate")
_DEFAULTS = {
    "num_workers": 0,
    "pin_memory": False,
    "persistent_workers": False,
    "prefetch_factor": 2,
}


def _default_workers() -> tuple[int, ...]:
    cpus = available_cpus()
    return tuple(sorted({0, 1, 2, cpus, min(2 * cpus, 8)}))


@dataclass
class LoaderTuneConfig(Config):
    """Search space and trial length.

    search: "grid" tries every combination once, then the runners-up up to
    ``confirm_top`` challenge the leader head to head; "coordinate" starts from
    the plain loader (num_workers=0) and sweeps num_workers, persistent_workers,
    prefetch_factor and pin_memory one at a time, each change adopted only when
    it beats the incumbent by ``min_gain`` in ``rounds`` interleaved pairs (a
    shared machine drifts; adjacent pairs see the same load), and the final pick
    must beat the plain loader again over two rounds. "auto" picks grid
    when it has at most ``max_grid`` configurations. pin_memory is only tried when CUDA is
    present (pinning without a device copy only costs).
    """

    batch_size: int = 64
    num_workers: tuple[int, ...] = field(default_factory=_default_workers)
    pin_memory: tuple[bool, ...] = (False, True)
    persistent_workers: tuple[bool, ...] = (False, True)
    prefetch_factor: tuple[int, ...] = (2, 4, 8)
    batches_per_trial: int = 12
    epochs_per_trial: int = 2
    search: str = "auto"
    max_grid: int = 8
    confirm_top: int = 2
    rounds: int = 1
    min_gain: float = 0.05
    version: int = DATA_FORMAT_VERSION

    def __post_init__(self) -> None:
        self.num_workers = tuple(int(w) for w in self.num_workers)
        self.pin_memory = tuple(bool(p) for p in self.pin_memory)
        self.persistent_workers = tuple(bool(p) for p in self.persistent_workers)
        self.prefetch_factor = tuple(int(p) for p in self.prefetch_factor)
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size!r}: expected >= 1")
        if not self.num_workers or min(self.num_workers) < 0:
            raise ConfigError(
                f"num_workers={self.num_workers!r}: expected a non-empty list of counts >= 0"
            )
        if not self.prefetch_factor or min(self.prefetch_factor) < 1:
            raise ConfigError(f"prefetch_factor={self.prefetch_factor!r}: expected values >= 1")
        if not self.pin_memory or not self.persistent_workers:
            raise ConfigError(
                "pin_memory and persistent_workers need at least one value each, e.g. (False,)"
            )
        if self.batches_per_trial < 2:
            raise ConfigError(
                f"batches_per_trial={self.batches_per_trial!r}: expected >= 2 (first batch is start-up)"
            )
        if self.epochs_per_trial < 2:
            raise ConfigError(
                f"epochs_per_trial={self.epochs_per_trial!r}: expected >= 2 (epoch 2 shows worker reuse)"
            )
        if self.search not in _SEARCH:
            raise ConfigError(f"search={self.search!r}: expected one of {_SEARCH}")
        if self.confirm_top < 1 or self.max_grid < 1 or self.rounds < 1:
            raise ConfigError("confirm_top, max_grid and rounds must be >= 1")
        if not 0.0 <= self.min_gain < 1.0:
            raise ConfigError(
                f"min_gain={self.min_gain!r}: expected a fraction in [0, 1), e.g. 0.05"
            )


@dataclass
class LoaderTuneResult(Config):
    """best_kwargs: DataLoader keyword arguments; table: one row per trial (images_per_s projected to a full epoch)."""

    best_kwargs: dict[str, Any]
    table: list[dict[str, Any]]
    search: str
    trials: int
    elapsed_s: float
    machine: str
    dataset_fingerprint: str | None
    from_cache: bool = False
    notes: list[str] = field(default_factory=list)


def machine_fingerprint() -> str:
    """Facts that change loader speed: host, CPU model and count, torch build, GPU."""
    cpu_model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    facts = {
        "host": platform.node(),
        "machine": platform.machine(),
        "cpu": cpu_model,
        "cpus": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return fingerprint_json(facts)


def dataset_fingerprint(dataset: Any) -> str | None:
    """The dataset's own fingerprint (method or attribute), or None when it has none."""
    fp = getattr(dataset, "fingerprint", None)
    if callable(fp):
        fp = fp()
    if fp is None and isinstance(dataset, torch.utils.data.Subset):
        inner = dataset_fingerprint(dataset.dataset)
        return None if inner is None else fingerprint_json([inner, list(dataset.indices)])
    return fp if isinstance(fp, str) else None


def _loader_kwargs(num_workers: int, pin: bool, persistent: bool, prefetch: int) -> dict[str, Any]:
    kw: dict[str, Any] = {"num_workers": num_workers, "pin_memory": pin}
    if num_workers > 0:  # DataLoader rejects these two without workers
        kw["persistent_workers"] = persistent
        kw["prefetch_factor"] = prefetch
    return kw


def measure_loader(
    dataset: Any,
    loader_kwargs: dict[str, Any],
    *,
    batch_size: int,
    batches: int,
    epochs: int = 2,
    full_epoch_batches: int | None = None,
    consume: Callable[[Any], None] | None = None,
) -> dict[str, float]:
    """Time ``epochs`` short passes; project the images/s of one full epoch.

    With W workers the first W batches are made in parallel and arrive together,
    so per-batch time is measured from the end of that first round (arrival of
    batch W-1) to the last batch, and start-up is the time until that first
    round ended (worker spawn unless persistent). Timing from the first batch
    instead would count the rest of the first round as free and flatter many
    workers. The projection uses the last pass (persistent workers already up):
    start-up + steady x (full batches - W).
    """
    first_round = max(int(loader_kwargs.get("num_workers", 0)), 1)
    batches = max(batches, 2 * first_round + 2)  # enough batches after the first round
    n = min(len(dataset), batches * batch_size)
    subset = torch.utils.data.Subset(dataset, range(n))
    set_epoch = getattr(dataset, "set_epoch", None)
    with warnings.catch_warnings():
        # Trying more workers than cores is the point of a trial; torch's advice is noise here.
        warnings.filterwarnings("ignore", message=".*worker processes in total.*")
        loader = torch.utils.data.DataLoader(
            subset, batch_size=batch_size, shuffle=False, **loader_kwargs
        )
        try:
            arrivals = _timed_passes(loader, epochs, set_epoch, consume)
        finally:
            del loader  # shuts persistent workers down
    last = arrivals[-1]  # seconds from iter() to the consumer finishing batch k
    k0 = min(first_round, len(last)) - 1
    steady = (last[-1] - last[k0]) / max(len(last) - 1 - k0, 1)
    startup = last[k0]
    full = full_epoch_batches if full_epoch_batches is not None else -(-len(dataset) // batch_size)
    epoch_s = startup + steady * max(full - 1 - k0, 0)
    return {
        "images_per_s": full * batch_size / epoch_s if epoch_s > 0 else float("inf"),
        "startup_s": startup,
        "steady_images_per_s": batch_size / steady if steady > 0 else float("inf"),
    }


def _timed_passes(
    loader: Any,
    epochs: int,
    set_epoch: Callable[[int], None] | None,
    consume: Callable[[Any], None] | None,
) -> list[list[float]]:
    """For each pass, the time from ``iter()`` to the end of consuming each batch."""
    out = []
    for epoch in range(epochs):
        if set_epoch is not None:
            set_epoch(epoch)
        t0 = time.perf_counter()
        marks = []
        for batch in loader:
            if consume is not None:
                consume(batch)
            marks.append(time.perf_counter() - t0)
        out.append(marks)
    return out


def _key(kw: dict[str, Any]) -> tuple:
    return (
        kw["num_workers"],
        kw["pin_memory"],
        kw.get("persistent_workers", False),
        kw.get("prefetch_factor", 2),
    )


def tune_loader(
    dataset: Any,
    config: LoaderTuneConfig | None = None,
    *,
    consume: Callable[[Any], None] | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    dataset_key: str | None = None,
    context: str | None = None,
    progress: bool = False,
) -> LoaderTuneResult:
    """Find the fastest DataLoader kwargs for ``dataset`` on this machine.

    Returns the best kwargs (ready for ``DataLoader(dataset, batch_size=..., **best_kwargs)``)
    and the table of every trial. The result is cached per machine, dataset
    fingerprint (or ``dataset_key``), search config, this process's torch thread
    count and ``context`` (name the consumer step there: a heavier step changes
    the answer); a dataset with neither fingerprint nor key is tuned every time.
    """
    config = config or LoaderTuneConfig()
    machine = machine_fingerprint()
    ds_fp = dataset_key or dataset_fingerprint(dataset)
    notes: list[str] = []
    cache_path = None
    if use_cache and ds_fp is not None:
        root = Path(cache_dir) if cache_dir else cache_root() / "tune"
        settings = fingerprint_json([config.to_dict(), torch.get_num_threads(), context])
        name = f"{machine[:12]}-{ds_fp[:16]}-{settings[:8]}.json"
        cache_path = root / name
        if cache_path.is_file():
            import json

            try:
                cached = LoaderTuneResult.from_dict(json.loads(cache_path.read_text()))
                cached.from_cache = True
                return cached
            except (ValueError, TypeError):
                notes.append(f"ignored unreadable tuner cache {cache_path}")
    elif use_cache:
        notes.append("dataset has no fingerprint and no dataset_key: result not cached")

    has_cuda = torch.cuda.is_available()
    pins = config.pin_memory if has_cuda else (False,)
    if not has_cuda and True in config.pin_memory:
        notes.append("pin_memory=True skipped: no CUDA device, pinning would only add a copy")
    workers = config.num_workers
    grid = [
        _loader_kwargs(w, p, s, f)
        for w, p in itertools.product(workers, pins)
        for s, f in (
            itertools.product(config.persistent_workers, config.prefetch_factor)
            if w > 0
            else [(False, 2)]
        )
    ]
    search = config.search
    if search == "auto":
        search = "grid" if len(grid) <= config.max_grid else "coordinate"

    results: dict[tuple, list[dict[str, Any]]] = {}
    full_batches = -(-len(dataset) // config.batch_size)

    def trial(kw: dict[str, Any], phase: str) -> float:
        row = measure_loader(
            dataset,
            kw,
            batch_size=config.batch_size,
            batches=config.batches_per_trial,
            epochs=config.epochs_per_trial,
            full_epoch_batches=full_batches,
            consume=consume,
        )
        row = {**_DEFAULTS, **kw, **row, "phase": phase}
        results.setdefault(_key(kw), []).append(row)
        return row["images_per_s"]

    def challenge(
        incumbent: dict[str, Any], challenger: dict[str, Any], phase: str, rounds: int | None = None
    ) -> bool:
        """Pair the two in ``rounds`` interleaved rounds (A B, B A, ...); True when the
        challenger's median throughput ratio beats the incumbent by ``min_gain``.
        Shared machines drift; adjacent pairs see the same load, separate trials do not."""
        ratios = []
        for r in range(rounds or config.rounds):
            order = [("i", incumbent), ("c", challenger)]
            rates = {who: trial(kw, phase) for who, kw in (order if r % 2 == 0 else order[::-1])}
            ratios.append(rates["c"] / rates["i"] if rates["i"] > 0 else float("inf"))
        ratio = statistics.median(ratios)
        results[_key(challenger)][-1]["ratio_vs_incumbent"] = ratio
        return ratio > 1.0 + config.min_gain

    t_start = time.perf_counter()
    from rich.progress import Progress

    with Progress(disable=not progress, transient=True) as bar:
        bar.add_task("tuning DataLoader", total=None)
        if search == "grid":
            for kw in grid:
                trial(kw, "grid")
            ranked = sorted(results, key=lambda k: -results[k][0]["images_per_s"])
            best = _loader_kwargs(*ranked[0])
            # One short pass each is noisy: the runner-up must beat the leader head to head.
            for key in ranked[1 : config.confirm_top]:
                if challenge(best, _loader_kwargs(*key), "confirm"):
                    best = _loader_kwargs(*key)
        else:
            # Start from the plain loader; each change must win a head-to-head by min_gain.
            plain = best = _loader_kwargs(0, False, False, 2)
            sweeps: list[tuple[str, Iterable[Any]]] = [
                ("num_workers", workers),
                ("persistent_workers", config.persistent_workers),
                ("prefetch_factor", config.prefetch_factor),
                ("pin_memory", pins),
            ]
            for name, values in sweeps:
                if name in ("persistent_workers", "prefetch_factor") and best["num_workers"] == 0:
                    continue
                for value in values:
                    merged = {**_DEFAULTS, **best, name: value}
                    cand = _loader_kwargs(
                        merged["num_workers"],
                        merged["pin_memory"],
                        merged["persistent_workers"],
                        merged["prefetch_factor"],
                    )
                    if _key(cand) != _key(best) and challenge(best, cand, f"sweep {name}"):
                        best = cand
            # Guard against a chain of lucky single pairs: the final pick must still
            # beat the plain loader over two interleaved rounds, or the plain one stays.
            if _key(best) != _key(plain) and not challenge(plain, best, "final check", rounds=2):
                notes.append(
                    f"{best} did not beat the plain loader head to head; keeping num_workers=0"
                )
                best = plain
    best_key = _key(best)
    table = [row for rows in results.values() for row in rows]
    result = LoaderTuneResult(
        best_kwargs=_loader_kwargs(*best_key),
        table=table,
        search=search,
        trials=len(table),
        elapsed_s=time.perf_counter() - t_start,
        machine=machine,
        dataset_fingerprint=ds_fp,
        notes=notes,
    )
    if cache_path is not None:
        atomic_write_json(cache_path, result.to_dict())
    return result
