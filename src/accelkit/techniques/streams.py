"""Parallel inference streams: several sessions of a runtime (ONNX Runtime's), each on a slice of
every batch with one core's share of the threads, instead of one session spreading each op over all cores.

Buys throughput where the ops are too small to keep every intra-op thread busy (short
sentences, small batches); outputs are unchanged (each row is computed alone either way). Costs
one copy of the graph's working memory per stream, and single-row latency does not improve.
"""

from __future__ import annotations

from dataclasses import dataclass

from accelkit.config import Config
from accelkit.errors import ConfigError
from accelkit.runtimes.base import Runtime
from accelkit.runtimes.onnxruntime import OrtConfig, OrtModule
from accelkit.techniques.onnx_runtime import ORT_AVAILABLE
from accelkit.techniques.registry import BuildContext, Built, register_technique

__all__ = ["ParallelStreamsConfig", "apply_parallel_streams"]


@dataclass
class ParallelStreamsConfig(Config):
    """``streams=None``: one per compute thread accelkit uses on this machine (``accelkit env``)."""

    streams: int | None = None
    version: int = 1

    def __post_init__(self) -> None:
        if self.streams is not None and self.streams < 1:
            raise ConfigError(f"streams={self.streams}: expected None or >= 1")


def apply_parallel_streams(module: Runtime, config: ParallelStreamsConfig | None = None) -> Runtime:
    """The runtime serving the same graph from ``streams`` sessions side by side."""
    if not isinstance(module, Runtime):
        raise ConfigError(f"parallel streams drive a runtime's sessions, not a {type(module).__name__}; "
                          "put a runtime step (onnx, int8-aware …) before it")
    config = config or ParallelStreamsConfig()
    return module.with_streams(config.streams)


def _one_thread_machine() -> str | None:
    reason = ORT_AVAILABLE()
    if reason:
        return reason
    return "one compute thread here: nothing to run side by side" if OrtConfig().threads() < 2 else None


@register_technique("parallel-streams", group="serving", description="one ONNX Runtime session per core, each "
                    "on a slice of the batch", accepts=(OrtModule.form,), available=_one_thread_machine,
                    config=ParallelStreamsConfig)
def _parallel_streams(module, ctx: BuildContext, config: ParallelStreamsConfig) -> Built:
    built = apply_parallel_streams(module, config)
    streams = built.describe().streams
    # the count chosen for this machine, so the saved plan replays it rather than re-deciding
    return Built(built, ctx.settings, {"streams": streams}, config=ParallelStreamsConfig(streams=streams).to_dict())
