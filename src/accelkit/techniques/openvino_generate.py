"""OpenVINO as the runtime of text generation: the causal LM exported as a stateful graph (its
key/value cache kept inside the infer request), driven by a lean decoding loop.

Buys: OpenVINO's CPU kernels for every step (weights packed once at compile, each layer's cache
append and attention fused into one node, int8/int4 weights through NNCF when asked), a prompt
pass well under ``generate``'s (0.44-0.71x its time to first token on a 2-core Zen 4), and no
``generate`` bookkeeping between tokens: each step sends one token per row and reads its logits back.
Saves as OpenVINO's own files, so a shipped folder writes text without torch running the model.
Costs: an export and a compile at build time (seconds for a small model); the graph computes
outside torch; the loop decodes greedily or samples (temperature, top-k, top-p, min-p: seeded, the
draws ``generate`` makes), and beams, penalties or other ``generate`` options run the torch model's
own ``generate`` (a loaded folder refuses them); the graph returns each row's last logits only, so
no logits over the prompt for a perplexity pass. At ``precision="f32"`` with an f32 cache, greedy
tokens equal ``generate``'s up to the kernels' rounding; "bf16", a smaller cache and compressed
weights trade exactness for speed.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from accelkit._lazy import require
from accelkit.config import Config
from accelkit.errors import ConfigError
from accelkit.export.openvino_lm import export_stateful_lm
from accelkit.runtimes.openvino_lm import OpenVinoLm, OpenVinoLmConfig
from accelkit.techniques.openvino_runtime import OPENVINO_AVAILABLE
from accelkit.techniques.registry import BuildContext, Built, register_technique
from accelkit.techniques.static_cache import causal_lm_of

__all__ = ["OpenVinoGenerateConfig", "built_runner", "openvino_generator", "transformers_causal_lm"]

_WEIGHTS = {"float": None, "int8": "INT8_ASYM", "int4": "INT4_SYM"}


@dataclass
class OpenVinoGenerateConfig(Config):
    """``precision``: OpenVINO's inference precision, "f32" or "bf16" (a CPU with native bf16);
    ``kv_cache``: the precision the cache is kept in ("f32", "f16", "u8"); ``weights``: "float",
    or weights compressed to "int8" (per channel) or "int4" (groups of 128) by NNCF; ``threads``:
    None for accelkit's thread count here."""

    precision: str = "f32"
    kv_cache: str = "f32"
    weights: str = "float"
    threads: int | None = None
    version: int = 1

    def __post_init__(self) -> None:
        if self.weights not in _WEIGHTS:
            raise ConfigError(f"weights={self.weights!r}: expected one of {', '.join(_WEIGHTS)}")
        self.runtime_config()  # the runtime's own checks of the other fields

    def runtime_config(self) -> OpenVinoLmConfig:
        return OpenVinoLmConfig(precision=self.precision, kv_cache=self.kv_cache, threads=self.threads)


def transformers_causal_lm(model: nn.Module, technique: str) -> nn.Module:
    """The transformers causal LM inside ``model`` (what a stateful OpenVINO export reads), or a
    ConfigError naming ``technique``."""
    model = causal_lm_of(model)
    if getattr(model, "config", None) is None or not callable(getattr(model, "generate", None)):
        raise ConfigError(f"{technique} needs a transformers causal LM (with .config and generate); got a "
                          f"{type(model).__name__}")
    return model


def built_runner(make: Callable[[], OpenVinoLm], ctx: BuildContext, config: Config) -> Built:
    """A technique's result for the OpenVINO generation runtime ``make()`` builds: its record, with
    the export-and-compile time in ``compile_s``, and autocast off (the graph computes outside torch)."""
    start = time.perf_counter()
    runner = make()
    details = {**runner.describe().to_dict(), "compile_s": round(time.perf_counter() - start, 2)}
    return Built(runner, ctx.settings.with_(autocast=None), details, config=config.to_dict())


def openvino_generator(model: nn.Module, config: OpenVinoGenerateConfig | None = None) -> OpenVinoLm:
    """``model`` (a transformers causal LM, fp32, eval) as a compiled stateful OpenVINO graph whose
    ``generate`` decodes greedily or samples; the torch model stays beside it for other
    ``generate`` options."""
    config = config or OpenVinoGenerateConfig()
    model = transformers_causal_lm(model, "openvino-generate")
    graph = export_stateful_lm(model)
    mode = _WEIGHTS[config.weights]
    if mode is not None:
        nncf = require("nncf", "nncf")
        kwargs = {"group_size": 128, "ratio": 1.0} if config.weights == "int4" else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = nncf.compress_weights(graph, mode=getattr(nncf.CompressWeightsMode, mode), **kwargs)
    details = {"decode": "OpenVINO stateful graph, lean decoding loop", "weights": config.weights,
               "kv_cache": config.kv_cache}
    return OpenVinoLm(graph, config.runtime_config(), model=model, details=details)


_GENERATE = {"needs": ("generate",), "accepts": ("eager",), "produces": OpenVinoLm.form, "voids": ("autocast",),
             "objectives": ("throughput", "latency"), "available": OPENVINO_AVAILABLE,
             "config": OpenVinoGenerateConfig}


@register_technique("openvino-generate", group="runtime", description="OpenVINO runtime for text generation: "
                    "the causal LM as a stateful graph (cache inside the infer request), fp32, lean "
                    "decoding loop (greedy or sampled)",
                    **_GENERATE)
def _openvino_generate(model: nn.Module, ctx: BuildContext, config: OpenVinoGenerateConfig) -> Built:
    return _build(model, ctx, config)


@register_technique("openvino-generate-f16-cache", group="runtime", description="openvino-generate with the "
                    "key/value cache kept in f16 (half its reads; keys and values rounded to 11 bits)", **_GENERATE)
def _openvino_generate_f16_cache(model: nn.Module, ctx: BuildContext, config: OpenVinoGenerateConfig) -> Built:
    # the variant's point is its cache: a config left at its default gets the f16 one
    return _build(model, ctx, config if config.kv_cache != "f32" else dataclasses.replace(config, kv_cache="f16"))


def _build(model: nn.Module, ctx: BuildContext, config: OpenVinoGenerateConfig) -> Built:
    return built_runner(lambda: openvino_generator(model, config), ctx, config)
