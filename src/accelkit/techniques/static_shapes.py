"""Static shapes: an OpenVINO model compiled once for each batch shape it meets, every dimension
fixed, with text batches padded to lengths ~10% apart so that it meets few shapes.

Buys OpenVINO's static-shape kernels: the attention and the element-wise chains fuse into
larger JIT subgraphs than a dynamic-shape compile gets (minilm int8, batch 32, 2 threads on a
Zen 4: 1.14-1.20x on inference; ``benchmarks/explore/minilm_static_shapes.py``). Outputs are the
same up to float rounding (the extra pad tokens are masked). Costs a compile (~0.5 s for minilm)
and a copy of the compiled weights (~45 MB for minilm int8) for each shape compiled, up to
``max_shapes`` (by default as many as fit in 2 GiB; later shapes run on the dynamic compile),
and ~3.5% more pad tokens. So a shape is compiled only once its calls pay for it
(``accelkit.runtimes.openvino.compile_pays``: minilm, some 75 batches of 32 a shape), or at
``settle`` (a server after a warm-up call; ``bench`` and ``optimize`` before every pass, so they
measure the long run): a few hundred sentences encoded once run on the dynamic compile at its
speed, with its slightly different bf16 rounding. ``bench`` scores quality on both compiles and
reports the worse (``Runtime.before_settling``), so the plan's floors hold for either.
"""

from __future__ import annotations

from dataclasses import dataclass

from accelkit.config import Config
from accelkit.errors import ConfigError
from accelkit.runtimes.openvino import OpenVinoModule
from accelkit.techniques.openvino_runtime import OPENVINO_AVAILABLE
from accelkit.techniques.registry import BuildContext, Built, register_technique

__all__ = ["StaticShapesConfig", "apply_static_shapes", "default_max_shapes"]


# compiles kept by default: as many as fit in this much memory at twice the graph's size each (a
# compiled minilm int8 graph of 23 MB held ~45 MB), between these bounds; 34 bucket lengths reach 256
_MEMORY_BYTES = 2 * 1024**3
_DEFAULT_RANGE = (4, 40)


@dataclass
class StaticShapesConfig(Config):
    """``max_shapes``: the most shapes compiled each on its own (None: as many as fit in 2 GiB at
    twice the graph's size each, 4 to 40; the saved plan records the number chosen)."""

    max_shapes: int | None = None
    version: int = 1

    def __post_init__(self) -> None:
        if self.max_shapes is not None and self.max_shapes < 1:
            raise ConfigError(f"max_shapes={self.max_shapes}: expected None or a positive integer")


def default_max_shapes(graph_bytes: int) -> int:
    """How many static compiles of a graph of ``graph_bytes`` fit the default memory allowance."""
    low, high = _DEFAULT_RANGE
    return max(low, min(high, _MEMORY_BYTES // max(1, 2 * graph_bytes)))


def apply_static_shapes(module: OpenVinoModule, config: StaticShapesConfig | None = None) -> OpenVinoModule:
    """The same graph, compiled again for every input shape it meets (up to ``max_shapes``)."""
    if not isinstance(module, OpenVinoModule):
        raise ConfigError(f"static shapes recompile an OpenVINO model, not a {type(module).__name__}; put an "
                          "OpenVINO step (openvino, openvino-bf16, openvino-int8) before static-shapes")
    config = config or StaticShapesConfig()
    limit = config.max_shapes or default_max_shapes(module.serialized_size_bytes)
    return module.with_static_shapes(limit)


@register_technique("static-shapes", group="serving", description="OpenVINO compiled once per batch shape, "
                    "text padded to lengths 10% apart", needs=("text",), accepts=(OpenVinoModule.form,),
                    objectives=("throughput", "latency"), available=OPENVINO_AVAILABLE, config=StaticShapesConfig)
def _static_shapes(module: OpenVinoModule, ctx: BuildContext, config: StaticShapesConfig) -> Built:
    built = apply_static_shapes(module, config)
    settings = ctx.settings.with_(padding="bucketed", sort_by_length=True)
    limit = built.config.static_shapes
    # the limit chosen for this graph, so the saved plan replays it rather than re-deciding
    return Built(built, settings, {"max_shapes": limit}, config=StaticShapesConfig(max_shapes=limit).to_dict())
