"""OpenVINO as the runtime of text generation: the causal LM exported as a stateful graph (its
key/value cache kept inside the infer request), driven by a lean greedy loop.

Buys: OpenVINO's CPU kernels for every step (weights packed once at compile, each layer's cache
append and attention fused into one node, int8/int4 weights through NNCF when asked) and no
``generate`` bookkeeping between tokens: each step sends one token per row and reads one back.
Costs: an export and a compile at build time (seconds for a small model); the graph computes
outside torch; greedy decoding only (sampling, beams or other ``generate`` options run the torch
model's own ``generate``); the graph returns the next token only, so no logits for a perplexity
pass. At ``precision="f32"`` with an f32 cache, greedy tokens equal ``generate``'s up to the
kernels' rounding; "bf16", a smaller cache and compressed weights trade exactness for speed.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from accelkit._lazy import require
from accelkit._threads import available_cpus
from accelkit.config import Config
from accelkit.errors import ConfigError
from accelkit.export.openvino_lm import export_stateful_lm
from accelkit.runtimes.onnxruntime import OrtConfig
from accelkit.signal_stack import keep_signal_stack
from accelkit.techniques.openvino_runtime import OPENVINO_AVAILABLE
from accelkit.techniques.registry import BuildContext, Built, register_technique
from accelkit.techniques.static_cache import causal_lm_of, lean_greedy

__all__ = ["OpenVinoGenerateConfig", "OpenVinoGenerator"]

_PRECISIONS = ("f32", "bf16")
_CACHES = ("f32", "f16", "u8")
_WEIGHTS = {"float": None, "int8": "INT8_ASYM", "int4": "INT4_SYM"}


@dataclass
class OpenVinoGenerateConfig(Config):
    """``precision``: OpenVINO's inference precision, "f32" or "bf16" (a CPU with native bf16);
    ``kv_cache``: the precision the cache is kept in ("f32", "f16", "u8"; OpenVINO's own default on
    a CPU is a smaller one); ``weights``: "float", or weights compressed to "int8" (per channel)
    or "int4" (groups of 128) by NNCF; ``threads``: None for accelkit's thread count here."""

    precision: str = "f32"
    kv_cache: str = "f32"
    weights: str = "float"
    threads: int | None = None
    version: int = 1

    def __post_init__(self) -> None:
        for name, allowed in (("precision", _PRECISIONS), ("kv_cache", _CACHES), ("weights", tuple(_WEIGHTS))):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r}: expected one of {', '.join(allowed)}")
        if self.threads is not None and (isinstance(self.threads, bool) or self.threads < 1):
            raise ConfigError(f"threads={self.threads!r}: expected None or a positive number of threads")


class OpenVinoGenerator(nn.Module):
    """A causal LM whose greedy ``generate`` runs as a stateful OpenVINO graph; called like the
    torch model otherwise (``generate`` with other options goes to the model's own)."""

    computes_outside_torch = True

    def __init__(self, model: nn.Module, config: OpenVinoGenerateConfig | None = None) -> None:
        super().__init__()
        ov = require("openvino", "openvino")
        self.model, self.config = model, config or OpenVinoGenerateConfig()
        graph = export_stateful_lm(model)
        mode = _WEIGHTS[self.config.weights]
        if mode is not None:
            nncf = require("nncf", "nncf")
            kwargs = {"group_size": 128, "ratio": 1.0} if self.config.weights == "int4" else {}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                graph = nncf.compress_weights(graph, mode=getattr(nncf.CompressWeightsMode, mode), **kwargs)
        threads = self.config.threads or OrtConfig().threads()
        settings: dict[str, Any] = {"INFERENCE_PRECISION_HINT": self.config.precision,
                                    "KV_CACHE_PRECISION": self.config.kv_cache, "INFERENCE_NUM_THREADS": threads,
                                    "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
        if threads < available_cpus():
            settings["ENABLE_CPU_PINNING"] = False  # other processes beside this one need the other cores
        with keep_signal_stack():  # compile_model swaps in a signal stack it later frees
            self._compiled = ov.Core().compile_model(graph, "CPU", settings)
        self._request = self._compiled.create_infer_request()
        self.threads = threads

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise ConfigError("openvino-generate: the OpenVINO graph returns each row's next token, not logits; "
                          "call generate, or run the torch model for logits")

    def generate(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                 **kwargs: Any) -> torch.Tensor:
        """``model.generate``'s greedy result (prompt and new tokens, one row per prompt); EOS
        stops a row when ``eos_token_id`` is given (later columns: ``pad_token_id``)."""
        if not lean_greedy(input_ids, kwargs):
            return self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        return self.greedy(input_ids, attention_mask, kwargs["max_new_tokens"], eos_token_id=kwargs.get("eos_token_id"),
                           pad_token_id=kwargs.get("pad_token_id"))

    def greedy(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, max_new_tokens: int, *,
               eos_token_id: int | list[int] | None = None, pad_token_id: int | None = None) -> torch.Tensor:
        if max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens={max_new_tokens}: expected a positive number of tokens to write")
        ids = input_ids.cpu().numpy().astype(np.int64)
        batch, length = ids.shape
        mask = np.ones_like(ids) if attention_mask is None else attention_mask.cpu().numpy().astype(np.int64)
        # the mask over everything read so far: the prompt's, then one column per token written
        full = np.ones((batch, length + max_new_tokens), dtype=np.int64)
        full[:, :length] = mask
        # left padding: a row's positions count its real tokens only, as generate numbers them
        positions = np.clip(mask.cumsum(-1) - 1, 0, None)
        beam = np.arange(batch, dtype=np.int32)
        request = self._request
        request.reset_state()
        token = request.infer({"input_ids": ids, "attention_mask": mask, "position_ids": positions,
                               "beam_idx": beam})["token"].copy()
        eos = np.asarray([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)) \
            if eos_token_id is not None else None
        done = np.zeros((batch, 1), dtype=bool)
        tokens = [token]
        position = positions[:, -1:] + 1
        for k in range(1, max_new_tokens):
            if eos is not None:
                done |= np.isin(token, eos)
                if done.all():
                    break
            token = request.infer({"input_ids": token, "attention_mask": np.ascontiguousarray(full[:, :length + k]),
                                   "position_ids": position, "beam_idx": beam})["token"].copy()
            if eos is not None:
                token = np.where(done, pad_token_id if pad_token_id is not None else 0, token)
            position = position + 1
            tokens.append(token)
        new = torch.from_numpy(np.concatenate(tokens, axis=1)).to(input_ids.device, input_ids.dtype)
        return torch.cat([input_ids, new], dim=1)


_GENERATE = {"needs": ("generate",), "accepts": ("eager",), "produces": "graph", "voids": ("autocast",),
             "objectives": ("throughput", "latency"), "saveable": False, "available": OPENVINO_AVAILABLE,
             "config": OpenVinoGenerateConfig}


@register_technique("openvino-generate", group="runtime", description="OpenVINO runtime for text generation: "
                    "the causal LM as a stateful graph (cache inside the infer request), fp32, lean greedy loop",
                    **_GENERATE)
def _openvino_generate(model: nn.Module, ctx: BuildContext, config: OpenVinoGenerateConfig) -> Built:
    return _build(model, ctx, config)


@register_technique("openvino-generate-f16-cache", group="runtime", description="openvino-generate with the "
                    "key/value cache kept in f16 (half its reads; keys and values rounded to 11 bits)", **_GENERATE)
def _openvino_generate_f16_cache(model: nn.Module, ctx: BuildContext, config: OpenVinoGenerateConfig) -> Built:
    # the variant's point is its cache: a config left at its default gets the f16 one
    return _build(model, ctx, config if config.kv_cache != "f32" else dataclasses.replace(config, kv_cache="f16"))


def _build(model: nn.Module, ctx: BuildContext, config: OpenVinoGenerateConfig) -> Built:
    model = causal_lm_of(model)
    if getattr(model, "config", None) is None or not callable(getattr(model, "generate", None)):
        raise ConfigError(f"openvino-generate needs a transformers causal LM (with .config and generate); got a "
                          f"{type(model).__name__}")
    start = time.perf_counter()
    runner = OpenVinoGenerator(model, config)
    return Built(runner, ctx.settings.with_(autocast=None),
                 {"decode": "OpenVINO stateful graph, lean greedy loop", "precision": config.precision,
                  "kv_cache": config.kv_cache, "weights": config.weights, "threads": runner.threads,
                  "compile_s": round(time.perf_counter() - start, 2)})
