"""Batch-size finder: the largest batch that fits (CUDA) or the fastest one under a memory budget (CPU).

Buys: a batch size chosen by measurement, with the curve that justifies it. Costs: a few
training steps per candidate. On CPU an out-of-memory kills the process instead of raising,
so every CPU probe runs in a spawned worker process and sizes predicted to exceed the
budget are never tried; on CUDA the search grows then bisects on OutOfMemoryError.
"""

from __future__ import annotations

import copy
import gc
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from accelkit.errors import AccelkitError, ConfigError
from accelkit.train._dist import resolve_device_type
from accelkit.train.precision import make_grad_scaler
from accelkit.train.probe_steps import tile_batch, timed_train_steps

__all__ = ["BatchProbe", "BatchSizeError", "BatchSizeResult", "find_max_batch_size"]


class BatchSizeError(AccelkitError):
    """No batch size fits: the model does not train even at batch size 1 under the budget."""


@dataclass
class BatchProbe:
    batch_size: int
    fits: bool
    samples_per_s: float | None = None
    peak_memory_mb: float | None = None  # CPU: peak RSS of the probe process; CUDA: max allocated
    predicted_memory_mb: float | None = None
    error: str | None = None


@dataclass
class BatchSizeResult:
    batch_size: int
    device: str
    objective: str  # "throughput" (CPU) or "largest_fit" (CUDA)
    memory_budget_mb: float | None
    curve: list[BatchProbe] = field(default_factory=list)
    verified: BatchProbe | None = None  # the chosen size measured again

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _dumps_payload(payload: tuple) -> bytes:
    """Pickle the probe payload; cloudpickle (when installed) also carries classes defined
    in the caller's ``__main__``, which plain pickle can only name, not ship."""
    import pickle

    from accelkit._lazy import is_available

    try:
        return pickle.dumps(payload)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        if is_available("cloudpickle"):
            import cloudpickle

            return cloudpickle.dumps(payload)
        raise ConfigError(
            f"the model, examples and loss_fn must pickle to be probed in a separate process ({exc}); "
            "define them in an importable module, or pip install cloudpickle"
        ) from exc


class _CPUProber:
    """A probe process started with subprocess; its death (OOM killer) is reported, not inherited."""

    def __init__(self, model, example_inputs, example_targets, loss_fn, precision, steps) -> None:
        import struct
        import subprocess
        import sys

        payload = _dumps_payload((model, example_inputs, example_targets, loss_fn, precision, steps))
        read_fd, write_fd = os.pipe()
        env = dict(os.environ)
        # the child must import what the parent can (the model's module, a source checkout)
        env["PYTHONPATH"] = os.pathsep.join(p for p in [*sys.path, env.get("PYTHONPATH", "")] if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "accelkit.train._probe_worker", str(write_fd), str(os.getpid())],
            stdin=subprocess.PIPE, pass_fds=(write_fd,), env=env,
        )
        os.close(write_fd)
        self._replies = os.fdopen(read_fd, "rb")
        try:
            self._proc.stdin.write(struct.pack("<Q", len(payload)) + payload)
            self._proc.stdin.flush()
            self.base_mb = self._recv(timeout=300)[1]
        except (EOFError, BrokenPipeError, ConnectionResetError) as exc:
            raise BatchSizeError(f"the probe process {self._death()} before it was ready (see its message "
                                 "above); check the model and loss_fn import in a fresh Python") from exc

    def _death(self) -> str:
        """How the probe process ended, in words: only SIGKILL looks like the out-of-memory killer."""
        import signal

        try:
            code = self._proc.wait(timeout=30)
        except Exception:  # noqa: BLE001 - still running although its channel closed: end it
            self._proc.kill()
            code = self._proc.wait()
        if code == -signal.SIGKILL:
            return "died: killed by SIGKILL (usually the out-of-memory killer)"
        if code < 0:
            return f"died from signal {signal.Signals(-code).name}"
        return f"died: exited with code {code}"

    def _recv(self, timeout: float) -> tuple:
        import select

        from accelkit.train._probe_worker import recv

        ready, _, _ = select.select([self._replies], [], [], timeout)
        if not ready:
            raise BatchSizeError(f"the probe process gave no answer in {timeout:.0f} s; lower max_batch_size or steps")
        return recv(self._replies)

    def probe(self, batch_size: int) -> BatchProbe:
        from accelkit.train._probe_worker import send

        try:
            send(self._proc.stdin, batch_size)
            reply = self._recv(timeout=600)
        except (EOFError, BrokenPipeError, ConnectionResetError):
            return BatchProbe(batch_size, False, error=f"probe process {self._death()} at batch size {batch_size}")
        if reply[0] == "ok":
            return BatchProbe(batch_size, True, samples_per_s=reply[1], peak_memory_mb=reply[2])
        if reply[0] == "error":  # not out-of-memory: it would fail at every size, so say what it is
            raise BatchSizeError(f"probing batch size {batch_size} failed with {reply[1]}, which is not out of "
                                 "memory; fix the model or loss_fn for the example batch")
        return BatchProbe(batch_size, False, error=reply[1])

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def close(self) -> None:
        try:
            self._proc.stdin.close()  # EOF: the worker returns
        except OSError:
            pass
        try:
            self._proc.wait(timeout=10)
        except Exception:  # noqa: BLE001 - a stuck worker is killed, whatever the reason
            self._proc.kill()
            self._proc.wait()
        self._replies.close()


def _cpu_budget_mb(memory_budget_mb: float | None, memory_fraction: float) -> float:
    if memory_budget_mb is not None:
        return float(memory_budget_mb)
    import psutil

    return psutil.virtual_memory().available / 2**20 * memory_fraction


def _candidates(start: int, max_batch_size: int) -> list[int]:
    sizes, b = [], start
    while b <= max_batch_size:
        sizes.append(b)
        b *= 2
    if sizes[-1] != max_batch_size:
        sizes.append(max_batch_size)
    return sizes


def _search_cpu(new_prober: Callable[[], Any], *, budget_mb: float, max_batch_size: int, patience: int,
                tolerance: float, progress: Callable[[BatchProbe], None] | None) -> BatchSizeResult:
    """The CPU search over doubling sizes; ``new_prober()`` starts a probe process."""
    prober = new_prober()
    curve: list[BatchProbe] = []
    try:
        falls = 0
        for b in _candidates(1, max_batch_size):
            fitted = [p for p in curve if p.fits]
            predicted = None
            if len(fitted) >= 2:  # memory grows ~linearly in batch: extrapolate from the last two
                p1, p2 = fitted[-2], fitted[-1]
                slope = max(0.0, (p2.peak_memory_mb - p1.peak_memory_mb) / (p2.batch_size - p1.batch_size))
                predicted = p2.peak_memory_mb + slope * (b - p2.batch_size)
                if predicted > budget_mb:
                    curve.append(BatchProbe(b, False, predicted_memory_mb=predicted, error="predicted to exceed the memory budget; not tried"))
                    break
            probe = prober.probe(b)
            probe.predicted_memory_mb = predicted
            if probe.fits and probe.peak_memory_mb > budget_mb:
                probe.fits, probe.error = False, f"peak {probe.peak_memory_mb:.0f} MB exceeds the budget {budget_mb:.0f} MB"
            curve.append(probe)
            if progress is not None:
                progress(probe)
            if not probe.fits:
                break
            earlier = [p.samples_per_s for p in curve[:-1] if p.fits]
            # no gain of more than ``tolerance`` over the best so far: a plateau or past the peak
            falls = falls + 1 if earlier and probe.samples_per_s < (1 + tolerance) * max(earlier) else 0
            if falls >= patience:  # bigger batches would only cost memory
                break
        fitted = [p for p in curve if p.fits]
        if not fitted:
            first = curve[0]
            raise BatchSizeError(
                f"the model does not fit at batch size 1 under the memory budget of {budget_mb:.0f} MB "
                f"({first.error}); raise memory_budget_mb, use precision='bf16', or shrink the model"
            )
        best_rate = max(p.samples_per_s for p in fitted)
        # the smallest batch within ``tolerance`` of the best: same speed, less memory
        chosen = min((p for p in fitted if p.samples_per_s >= (1 - tolerance) * best_rate), key=lambda p: p.batch_size)
        if not prober.alive:  # the last probe died (OOM-killed): verify in a fresh process
            prober.close()
            prober = new_prober()
        verified = prober.probe(chosen.batch_size)
        if not verified.fits:
            raise BatchSizeError(f"batch size {chosen.batch_size} fitted once but failed verification ({verified.error}); lower memory_budget_mb")
        return BatchSizeResult(chosen.batch_size, "cpu", "throughput", budget_mb, curve, verified)
    finally:
        prober.close()


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _find_cuda(model, example_inputs, example_targets, loss_fn, *, precision, max_batch_size, steps, safety_margin,
               progress) -> BatchSizeResult:
    device = torch.device("cuda", torch.cuda.current_device())
    model = copy.deepcopy(model).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)
    scaler = make_grad_scaler(precision, "cuda")
    curve: list[BatchProbe] = []

    def probe(b: int) -> BatchProbe:
        inputs = targets = None
        try:
            torch.cuda.reset_peak_memory_stats(device)
            inputs = tile_batch(example_inputs, b, device)
            targets = tile_batch(example_targets, b, device)
            rate = timed_train_steps(model, optimizer, scaler, inputs, targets, loss_fn, precision, "cuda", steps)
            result = BatchProbe(b, True, samples_per_s=rate, peak_memory_mb=torch.cuda.max_memory_allocated(device) / 2**20)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
            if not _is_oom(exc):
                raise
            result = BatchProbe(b, False, error="CUDA out of memory")
        finally:
            # free everything between trials so the next one starts from the same state
            del inputs, targets
            optimizer.zero_grad(set_to_none=True)
            gc.collect()
            torch.cuda.empty_cache()
        if progress is not None:
            progress(result)
        curve.append(result)
        return result

    good, bad, b = 0, None, 1
    while b <= max_batch_size:  # grow by doubling until OOM
        if probe(b).fits:
            good, b = b, b * 2
        else:
            bad = b
            break
    if good == 0:
        raise BatchSizeError("the model does not fit in GPU memory at batch size 1; use precision='bf16'/'fp16', FSDP, or a smaller model")
    if bad is None:
        bad = min(max_batch_size + 1, good * 2)
    while bad - good > 1:  # bisect between the last fit and the first OOM
        mid = (good + bad) // 2
        if probe(mid).fits:
            good = mid
        else:
            bad = mid
    chosen = max(1, int(good * safety_margin))
    verified = probe(chosen)
    if not verified.fits:
        raise BatchSizeError(f"batch size {chosen} failed verification ({verified.error}); lower safety_margin")
    return BatchSizeResult(chosen, "cuda", "largest_fit", None, curve, verified)


def find_max_batch_size(
    model: nn.Module,
    example_inputs: Any,
    example_targets: Any,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    *,
    device: str = "auto",
    precision: str = "fp32",
    memory_budget_mb: float | None = None,
    memory_fraction: float = 0.5,
    max_batch_size: int = 4096,
    steps: int = 3,
    patience: int = 3,
    tolerance: float = 0.03,
    safety_margin: float = 0.9,
    progress: Callable[[BatchProbe], None] | None = None,
) -> BatchSizeResult:
    """Find a training batch size by measurement; ``example_inputs/targets`` hold at least one
    sample (leading batch dim) and are tiled to each candidate size.

    CPU: doubling sizes up to ``max_batch_size`` probed in a spawned process (``model`` and
    ``loss_fn`` must pickle), skipping sizes whose extrapolated peak memory exceeds the budget
    (``memory_budget_mb``, default ``memory_fraction`` of available RAM) and stopping
    ``patience`` sizes past the throughput peak; returns the smallest size within
    ``tolerance`` of the best samples/s, measured again. CUDA: the largest size that fits
    (grow, then bisect on OOM) times ``safety_margin``. Raises BatchSizeError when batch 1 does not fit.
    """
    if max_batch_size < 1 or steps < 1 or patience < 1:
        raise ConfigError(f"max_batch_size={max_batch_size}, steps={steps}, patience={patience}: all must be >= 1")
    if not 0 < memory_fraction <= 1:
        raise ConfigError(f"memory_fraction={memory_fraction!r}: expected a fraction in (0, 1]")
    if not 0 < safety_margin <= 1:
        raise ConfigError(f"safety_margin={safety_margin!r}: expected a fraction in (0, 1]")
    if precision not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"precision={precision!r}: expected one of ['fp32', 'bf16', 'fp16']")
    device_type = resolve_device_type(device)
    if device_type == "cuda":
        return _find_cuda(model, example_inputs, example_targets, loss_fn, precision=precision,
                          max_batch_size=max_batch_size, steps=steps, safety_margin=safety_margin, progress=progress)
    budget = _cpu_budget_mb(memory_budget_mb, memory_fraction)
    payload = (model, example_inputs, example_targets, loss_fn, precision, steps)
    return _search_cpu(lambda: _CPUProber(*payload), budget_mb=budget, max_batch_size=max_batch_size,
                       patience=patience, tolerance=tolerance, progress=progress)
