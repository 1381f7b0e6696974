"""Prompt batching for throughput: write text for more prompts a call, at the batch size that
writes the most tokens a second here, found by timing the finished plan on calibration prompts.

Buys: a decoding step reads every weight once whatever the number of rows, so while a step is
bound by memory rather than arithmetic, more rows cost little more time (on a 2-core Zen 4 the
trained 11M Llama writes about twice the tokens a second at batch 32 as at batch 8). Costs: each
prompt waits for its whole batch (time to first token grows with the batch, so the latency
objective never uses it), the key/value cache grows with the rows, and a few passes over the
calibration prompts at build time. Greedy tokens can differ where padding does: left-padded rows
attend over more masked positions, which can reorder a sum (the quality column says so).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from accelkit.config import Config
from accelkit.errors import ConfigError
from accelkit.techniques.registry import FORMS, BuildContext, Built, register_technique

__all__ = ["PromptBatchingConfig", "cache_bytes_per_row", "find_prompt_batch"]

# the share of the free memory the largest batch's key/value cache may take
MEMORY_SHARE = 0.25


@dataclass
class PromptBatchingConfig(Config):
    """``batch_size``: prompts a call (None: found here, doubling the plan's batch size while a
    doubling writes at least ``min_gain`` times the tokens a second, up to ``max_batch_size`` and
    the calibration prompts at hand); ``rounds``: interleaved timed passes per comparison."""

    batch_size: int | None = None
    max_batch_size: int = 64
    min_gain: float = 1.1
    rounds: int = 2
    version: int = 1

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "rounds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r}: expected a positive whole number")
        if self.batch_size is not None and (isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int)
                                            or self.batch_size < 1):
            raise ConfigError(f"batch_size={self.batch_size!r}: expected None (find it) or a positive whole number")
        if not isinstance(self.min_gain, int | float) or self.min_gain < 1.0:
            raise ConfigError(f"min_gain={self.min_gain!r}: expected a ratio of 1.0 or more")


def cache_bytes_per_row(model: Any, tokens: int) -> int | None:
    """What one row's key/value cache holds at ``tokens`` positions in fp32, read from the
    transformers config of ``model`` (or of the torch model a runtime keeps as ``.model``); None
    when neither has one."""
    for found in (model, getattr(model, "model", None)):
        config = getattr(found, "config", None)
        layers, hidden, heads = (getattr(config, k, None) for k in ("num_hidden_layers", "hidden_size",
                                                                     "num_attention_heads"))
        if isinstance(layers, int) and isinstance(hidden, int) and isinstance(heads, int) and heads > 0:
            kv_heads = getattr(config, "num_key_value_heads", None) or heads
            head_dim = getattr(config, "head_dim", None) or hidden // heads
            return 2 * layers * kv_heads * head_dim * 4 * tokens
    return None


def find_prompt_batch(time_pass: Callable[[int, int], float], start: int, limit: int, *, min_gain: float = 1.1,
                      rounds: int = 2) -> tuple[int, dict[int, float], str]:
    """The batch size, from ``start`` doubling up to ``limit``, that writes the same prompts
    fastest: ``time_pass(size, n)`` is the seconds a pass over the first ``n`` prompts takes at
    ``size`` a call, and each doubling must beat the size before it by ``min_gain`` over the
    doubled size's count of prompts (two calls against one: the cheapest fair comparison), the
    median of ``rounds`` interleaved pairs after one untimed pass of the new size (its first call
    may compile). A size whose pass raises (out of memory, a runner that writes one prompt at a
    time) ends the doubling, its reason in ``stopped``.
    Returns (chosen size, {size tried: its time relative to ``start``'s}, why it stopped)."""
    chosen, relative, stopped = start, {start: 1.0}, f"reached {limit} (the largest size asked for, or the prompts)"
    size = start * 2
    while size <= limit:
        try:
            time_pass(size, size)
            pairs = [(time_pass(chosen, size), time_pass(size, size)) for _ in range(rounds)]
        except Exception as exc:  # noqa: BLE001 - any failure at a size only rules that size out
            stopped = f"batch {size} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
            break
        ratio = statistics.median(before / after for before, after in pairs if after > 0)
        relative[size] = round(relative[chosen] / ratio, 4)
        if ratio < min_gain:
            stopped = f"batch {size} was {ratio:.2f}x batch {chosen}'s speed, under {min_gain:g}x"
            break
        chosen, size = size, size * 2
    return chosen, relative, stopped


def _prompt_batching(model: Any, ctx: BuildContext, config: PromptBatchingConfig) -> Built:
    start = ctx.batch_size
    if config.batch_size is not None:  # a saved plan replays the size it chose
        return Built(model, ctx.settings.with_(batch_size=config.batch_size), {"batch_size": config.batch_size},
                     config=config.to_dict())
    prompts = ctx.calib_data(config.max_batch_size)
    limit = min(config.max_batch_size, len(prompts))
    capped = ""
    lengths = getattr(ctx.workload, "token_lengths", None)
    if lengths is not None and len(prompts):
        # a size whose cache would take over a quarter of the free memory is not tried: a row too
        # many is the kernel's out-of-memory kill, not an exception the search could catch
        new_tokens = ctx.workload.n_items(prompts) // len(prompts)
        per_row = cache_bytes_per_row(model, max(lengths(prompts)) + new_tokens)
        if per_row:
            import psutil

            fits = max(1, int(psutil.virtual_memory().available * MEMORY_SHARE // per_row))
            if fits < limit:
                limit, capped = max(start, fits), f"; capped at {fits} rows by the free memory"

    def time_pass(size: int, n: int) -> float:
        begin = time.perf_counter()
        ctx.workload.predict(model, prompts[:n], ctx.settings.with_(batch_size=size))
        return time.perf_counter() - begin

    chosen, relative, stopped = find_prompt_batch(time_pass, start, limit, min_gain=config.min_gain,
                                                  rounds=config.rounds)
    details = {"batch_size": chosen, "from_batch_size": start, "calib_prompts": len(prompts),
               "pass_time_vs_start": {str(k): v for k, v in relative.items()}, "stopped": stopped + capped}
    applied = dataclasses.replace(config, batch_size=chosen)
    return Built(model, ctx.settings.with_(batch_size=chosen), details, config=applied.to_dict())


register_technique("prompt-batching", group="serving", description="the batch size that writes the most tokens "
                   "a second here (doubling while it pays, timed on calibration prompts)", needs=("generate",),
                   accepts=FORMS, objectives=("throughput",), config=PromptBatchingConfig)(_prompt_batching)
