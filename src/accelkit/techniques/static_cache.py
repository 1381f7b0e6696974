"""Static key/value cache with a compiled one-token decode step, driven by a lean decoding
loop, greedy or sampling.

``model.generate`` with the default dynamic cache grows every layer's keys and values by one
column per token and runs its logits processors, stopping criteria and cache bookkeeping in
Python each step; on a small model that overhead, not the weight reads, bounds tokens/s. This
technique preallocates the cache (transformers' ``StaticCache``, its length rounded up to a
bucket so prompts of similar length share one shape), runs the prompt pass eagerly, then runs
each new token through one ``torch.compile``-d step of fixed shapes (token, position, cache
position, mask) that also takes the argmax, so only a (batch, 1) tensor comes back per token
(when sampling, a second compiled step returns each row's last logits, and the token is drawn
as ``generate`` draws it: transformers' warpers and torch's global generator).
Within the compiled step, linear layers run as a multiply and a sum that inductor compiles into
one vectorised reduction (at one token the library matmul reads weights at about a quarter of
the memory bandwidth: on a 2-core Zen 4, 4.6 ms against 1.7 ms for a 6-layer, 384-wide Llama's
45 MB of fp32 weights), attention as the plain matmul-softmax-matmul (sdpa's CPU flash kernel is
slow at one query), and dynamo's per-call checks of module attributes are skipped. A step of two
or more rows (a batch of prompts) reads each weight once for all rows instead: its linear layers
run through inductor's CPU GEMM template on weights frozen into the graph and packed once at
compile time (max-autotune keeps aten's matmul where that is faster); the multiply-and-sum would
stream every weight once a row, and the library matmul repacks the weights on every call (same
Llama, batch 8: 4.7 ms a step against 6.2 with the multiply-and-sum, 7.5 with aten matmuls).

Buys: the per-token Python and kernel-launch overhead of ``generate``, fused elementwise ops and
weight reads near memory speed (batch 1, 64 new tokens, the Llama above: 1.8 ms a token against
generate's 6.8; the compiled step with aten matmuls and sdpa, 5.6);
composes with weight-only int8 (torchao, whose dequantizing matmul inductor fuses), dynamic int8
and bf16 casts applied before it. Batches of left-padded prompts keep their mask and positions.
Costs: a compile per (batch size, cache bucket) — tens of seconds to minutes on a small CPU, paid
at build time for the batch sizes the workload runs (``details.compile_s``), longer for many-row
steps, which autotune each GEMM shape and hold a packed copy of the weights; attention over the
whole bucket rather than the tokens written so far; greedy decoding or sampling (temperature,
top-k, top-p, min-p; beams, penalties and other ``generate`` options run the model's own
``generate``), a sampling call compiling its own step; the model must not be changed between
calls (parameters and module attributes are not re-checked before a step). Greedy tokens (and a
seeded call's draws) equal ``generate``'s up to the rounding of a compiled graph (op reordering,
the reduction's summation order), identical without compile.
"""

from __future__ import annotations

import contextlib
import inspect
import time
import types
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from accelkit.config import Config
from accelkit.errors import ConfigError
from accelkit.runtimes.decoding import (
    TokenPicker,
    UnsupportedDecoding,
    decoding_defaults,
    eos_and_pad,
    lean_decoding,
)
from accelkit.techniques.registry import BuildContext, Built, register_technique

__all__ = ["StaticCacheConfig", "StaticCacheGenerator"]

# attention implementations of compiled steps: "" keeps the model's own
_ATTENTIONS = ("", "eager", "gqa", "sdpa")
# the most tokens per row a compiled step reads with the multiply-and-sum linear (a verify step's drafts)
_GEMV_TOKENS = 32


@dataclass
class StaticCacheConfig(Config):
    """``compile``: compile the one-token step (False: the same loop eagerly, for checks);
    ``bucket``: the cache length is the prompt plus new tokens rounded up to a multiple of it,
    so prompts of nearby lengths reuse one compiled step; ``gemv``: linear layers over at most 32
    tokens a row as multiply-and-sum reductions in the compiled step of one row; ``gemm``: steps
    of two or more rows run linear layers through inductor's CPU GEMM template on frozen weights
    (chosen by max-autotune); ``attention``, ``rows_attention``: the attention implementation of
    compiled one-row and many-row steps ("gqa": matmul-softmax-matmul reading each key/value head
    once for its query heads, "eager": the model's eager path, "sdpa", or "" for
    the model's own); ``lean_guards``: skip dynamo's checks of module attributes before each
    compiled step. The last four only act when compiled, so ``compile=False`` is the model's own
    arithmetic."""

    compile: bool = True
    bucket: int = 64
    gemv: bool = True
    attention: str = "eager"
    rows_attention: str = "gqa"
    lean_guards: bool = True
    gemm: bool = True
    version: int = 3

    def __post_init__(self) -> None:
        if isinstance(self.bucket, bool) or not isinstance(self.bucket, int) or not 1 <= self.bucket <= 4096:
            raise ConfigError(f"bucket={self.bucket!r}: expected a cache-length multiple between 1 and 4096 "
                              "(64 is the default)")
        for name in ("attention", "rows_attention"):
            if getattr(self, name) not in _ATTENTIONS:
                raise ConfigError(f"{name}={getattr(self, name)!r}: expected \"eager\", \"gqa\" or \"sdpa\" for "
                                  "the decode steps, or \"\" for the model's own")
        for name in ("compile", "gemv", "lean_guards", "gemm"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r}: expected true or false")


class _GemvLinear(TorchFunctionMode):
    """Within a compiled decode step, ``F.linear`` over a few tokens as a multiply and a sum over
    the input features, which inductor turns into one vectorised reduction that reads each weight
    once: at one token per row the library matmul (aten::mm) reaches about a quarter of the
    memory bandwidth on a small CPU, and a decode step is mostly these weight reads. The sum runs
    in another order than the matmul's, so logits differ in the last bits."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear:
            x, weight = args[0], args[1]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            # plain weights only: quantized tensor subclasses keep their own matmul
            if type(weight) in (torch.Tensor, nn.Parameter) and weight.dim() == 2 and x.dim() >= 2 \
                    and x.shape[-2] <= _GEMV_TOKENS:
                # one reduction per token, stacked: inductor fuses them into one pass over the
                # weights, where one broadcast (tokens, out, in) product is reduced 2x slower
                y = torch.stack([(x[..., i, None, :] * weight).sum(-1) for i in range(x.shape[-2])], dim=-2)
                return y if bias is None else y + bias
        return func(*args, **kwargs)


def _own_code(method: Any) -> Any:
    """``method`` bound to a copy of its function with its own code object: dynamo keeps compiled
    graphs per code object, so without it every generator's step (a draft's and its verifier's,
    each variant bench builds in one process) shares one cache of guarded entries, which
    recompiles on each switch and falls back to eager once its size limit is reached."""
    func = method.__func__
    own = types.FunctionType(func.__code__.replace(), func.__globals__, func.__name__, func.__defaults__,
                             func.__closure__)
    return types.MethodType(own, method.__self__)


# inductor settings of the many-row step: weights frozen into the graph as constants, so the CPU
# GEMM template can pack them once at compile time, and max-autotune to choose it over aten's
# matmul where it is faster; the library matmul repacks weights on every call
_GEMM_INDUCTOR = {"freezing": True, "max_autotune": True, "max_autotune_gemm_backends": "CPP,ATEN"}


def _grouped_query_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                             attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                             **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Plain matmul-softmax-matmul attention that reads each key/value head once for the query
    heads sharing it (the eager path copies keys and values once per query head: at a few new
    tokens over a long cache, those copies are most of the attention's work)."""
    batch, heads, q, dim = query.shape
    kv_heads, length = key.shape[1], key.shape[-2]
    groups = heads // kv_heads
    scale = dim ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query.reshape(batch, kv_heads, groups * q, dim), key.transpose(-1, -2)) * scale
    if attention_mask is not None:
        scores = (scores.view(batch, kv_heads, groups, q, length) + attention_mask[:, :, None, :, :length]
                  ).view(batch, kv_heads, groups * q, length)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    out = torch.matmul(probs, value).view(batch, heads, q, dim)
    return out.transpose(1, 2).contiguous(), None


def _register_grouped_attention() -> bool:
    """``"accelkit_gqa"`` as a transformers attention implementation, with the eager path's mask."""
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, eager_mask
    except ImportError:
        return False
    AttentionInterface.register("accelkit_gqa", _grouped_query_attention)
    AttentionMaskInterface.register("accelkit_gqa", eager_mask)
    return True


def _skip_model_guards(entries: list) -> list[bool]:
    """Dynamo guards to keep for the many-row step: none on the model's modules. With frozen
    weights dynamo specializes the modules, so torch's own filter for unchanged modules lets
    their guards through, and the step checked a thousand of them on every call (0.4 ms)."""
    return ["self._modules['model']" not in entry.name for entry in entries]


def _next_tokens(model: nn.Module, cache_arg: str, token: torch.Tensor, position: torch.Tensor,
                 cache_position: torch.Tensor, mask: torch.Tensor, cache: Any, logits: bool = False) -> torch.Tensor:
    """Greedy tokens after each of ``token``'s (batch, q) tokens, read over ``cache``: (batch, q);
    ``logits``: each row's last float32 logits instead, (batch, vocabulary), for a sampler."""
    out = model(input_ids=token, attention_mask=mask, position_ids=position, cache_position=cache_position,
                use_cache=True, **{cache_arg: cache})
    return out.logits[:, -1].float() if logits else out.logits.argmax(-1)


class _DecodeStep(nn.Module):
    """The many-row one-token step, on its own module whose submodule is the model: the guard
    filter above names the model by that path, and the step runs without the multiply-and-sum."""

    def __init__(self, model: nn.Module, cache_arg: str) -> None:
        super().__init__()
        self.model = model
        self.cache_arg = cache_arg
        self.forward = _own_code(self.forward)

    def forward(self, token: torch.Tensor, position: torch.Tensor, cache_position: torch.Tensor,
                mask: torch.Tensor, cache: Any, logits: bool = False) -> torch.Tensor:
        return _next_tokens(self.model, self.cache_arg, token, position, cache_position, mask, cache, logits)


class StaticCacheGenerator(nn.Module):
    """A causal LM whose ``generate`` (greedy or sampling) runs a prompt pass, then one-token steps
    over a preallocated ``StaticCache`` (compiled unless ``config.compile`` is False); called like
    the model otherwise. Caches are kept per (batch, cache length) and cleared between calls, so a
    compiled step sees the same tensors every call and is not recompiled."""

    def __init__(self, model: nn.Module, config: StaticCacheConfig | None = None) -> None:
        super().__init__()
        self.model = model
        self.config = config or StaticCacheConfig()
        params = inspect.signature(model.forward).parameters
        # transformers 5 renames past_key_values to cache; either name reaches the same cache
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._caches: dict[tuple, Any] = {}
        # the prompt pass needs the next token's logits only, not a (prompt, vocabulary) matrix, as in generate
        self._last_logits = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
        options: dict[str, Any] = {}
        if self.config.lean_guards:
            # dynamo re-checks every module attribute and parameter before each step; the model
            # is not changed between steps here, so those checks are skipped
            options["guard_filter_fn"] = torch.compiler.skip_guard_on_all_nn_modules_unsafe
        step = (torch.compile(_own_code(self._eager_step), dynamic=False, options=options)
                if self.config.compile else self._eager_step)
        self._step = self._with_attention(step, self.config.attention) if self.config.compile else step
        self._many_rows_step = self._step
        plain = all(type(p) in (torch.Tensor, nn.Parameter) for p in model.parameters())
        if self.config.compile and self.config.gemm and plain:  # quantized weights keep their own matmul
            many_options = {**options, "guard_filter_fn": _skip_model_guards} if self.config.lean_guards else options
            many = torch.compile(_DecodeStep(model, self._cache_arg).forward, dynamic=False, options=many_options)
            self._many_rows_step = self._with_inductor(self._with_attention(many, self.config.rows_attention))
        if self.config.compile:
            self._step, self._many_rows_step = self._outside_modes(self._step), self._outside_modes(self._many_rows_step)

    def _with_attention(self, step: Any, name: str) -> Any:
        """``step`` run with the model's attention set to ``name`` ("" leaves it; the prompt pass
        and anything else keep the model's own): at one query over a short cache, sdpa's CPU flash
        kernel costs more than the plain matmul-softmax-matmul compiled into the step."""
        config = self.model.config
        if not name:
            return step
        if name == "gqa":
            # the grouped path has no logit soft-capping: models that cap (Gemma 2) keep eager
            capped = getattr(config, "attn_logit_softcapping", None) is not None
            name = "accelkit_gqa" if not capped and _register_grouped_attention() else "eager"

        def run(*args: Any) -> torch.Tensor:
            own = config._attn_implementation
            config._attn_implementation = name
            try:
                return step(*args)
            finally:
                config._attn_implementation = own
        return run

    def _outside_modes(self, step: Any) -> Any:
        """``step``, except under a dispatch mode (a FLOP counter, a tracer), where the model's own
        eager step runs instead: dynamo cannot trace under one, and a code object it once failed
        on runs eagerly from then on (bench's FLOP-counting pass left the compiled step at
        ``generate``'s speed for every later call)."""
        from torch.utils._python_dispatch import _get_current_dispatch_mode

        def run(*args: Any) -> torch.Tensor:
            if _get_current_dispatch_mode() is not None:
                return _next_tokens(self.model, self._cache_arg, *args)
            return step(*args)
        return run

    @staticmethod
    def _with_inductor(step: Any) -> Any:
        """``step`` compiled (on its first call of each shape) under ``_GEMM_INDUCTOR``."""
        import torch._inductor.config as inductor_config

        def run(*args: Any) -> torch.Tensor:
            with inductor_config.patch(_GEMM_INDUCTOR):
                return step(*args)
        return run

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    def _eager_step(self, token: torch.Tensor, position: torch.Tensor, cache_position: torch.Tensor,
                    mask: torch.Tensor, cache: Any, logits: bool = False) -> torch.Tensor:
        """Greedy tokens after each of ``token``'s (batch, q) tokens: (batch, q); q is 1 in the
        decode loop, more where speculative decoding verifies drafted tokens. ``logits``: the last
        logits instead (dynamo keeps a graph per value, so sampling compiles a step of its own)."""
        with _GemvLinear() if self.config.gemv and self.config.compile else contextlib.nullcontext():
            return _next_tokens(self.model, self._cache_arg, token, position, cache_position, mask, cache, logits)

    def _cache(self, batch: int, length: int, dtype: torch.dtype, device: torch.device) -> Any:
        from transformers import StaticCache

        key = (batch, length, dtype, device)
        cache = self._caches.get(key)
        if cache is None:
            cache = self._caches[key] = StaticCache(config=self.model.config, max_cache_len=length)
        else:
            cache.reset()
        return cache

    def generate(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                 **kwargs: Any) -> torch.Tensor:
        """``model.generate``'s result (prompt and new tokens, one row per prompt), greedy or sampled
        (temperature, top-k, top-p, min-p; seed torch's generator for generate's draws); EOS (the
        call's ``eos_token_id``, else the model's) stops a row, later columns ``pad_token_id``, as
        generate does. Other options (beams, penalties ...) run the model's own generate."""
        # read on every call: the model's generation config may change between them, as for generate
        defaults = decoding_defaults(getattr(self.model, "generation_config", None))
        try:
            pick = lean_decoding(input_ids, kwargs, defaults)
        except UnsupportedDecoding:
            return self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        eos, pad = eos_and_pad(kwargs, defaults)
        return self.decode(input_ids, attention_mask, kwargs["max_new_tokens"], pick=pick, eos_token_id=eos,
                           pad_token_id=pad)

    def greedy(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, max_new_tokens: int, *,
               eos_token_id: int | list[int] | None = None, pad_token_id: int | None = None) -> torch.Tensor:
        """``decode`` with greedy picks."""
        return self.decode(input_ids, attention_mask, max_new_tokens, eos_token_id=eos_token_id,
                           pad_token_id=pad_token_id)

    def decode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, max_new_tokens: int, *,
               pick: TokenPicker | None = None, eos_token_id: int | list[int] | None = None,
               pad_token_id: int | None = None) -> torch.Tensor:
        """``max_new_tokens`` tokens after each row of ``input_ids`` (left-padded as ``attention_mask``
        says), each picked by ``pick`` (greedy when None: the argmax inside the compiled step)."""
        sampling = pick is not None and pick.do_sample
        if max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens={max_new_tokens}: expected a positive number of tokens to write")
        batch, length = input_ids.shape
        device = input_ids.device
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(input_ids.dtype)
        bucket = self.config.bucket
        total = -(-(length + max_new_tokens) // bucket) * bucket
        dtype = next(self.model.parameters()).dtype
        cache = self._cache(batch, total, dtype, device)
        # the mask over the whole cache: the prompt's, then ones for every token to write (causal
        # masking by cache position hides those not yet written), zeros past the end
        full = torch.zeros(batch, total, dtype=mask.dtype, device=device)
        full[:, :length] = mask
        full[:, length:length + max_new_tokens] = 1
        # left padding: a row's positions count its real tokens only, as generate numbers them
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=input_ids, attention_mask=full, position_ids=positions,
                         cache_position=torch.arange(length, device=device), use_cache=True,
                         **self._last_logits, **{self._cache_arg: cache})
        token = self._drawn(pick, out.logits[:, -1].float()) if sampling else out.logits[:, -1].argmax(-1, keepdim=True)
        del out
        eos = (torch.tensor([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id), device=device)
               if eos_token_id is not None else None)
        done = torch.zeros(batch, 1, dtype=torch.bool, device=device)
        tokens = [token]
        position = positions[:, -1:] + 1
        # one row reads each weight once as a multiply-and-sum; several rows share the reads in a GEMM
        step = self._step if batch == 1 else self._many_rows_step
        for k in range(1, max_new_tokens):
            if eos is not None:
                done = done | torch.isin(token, eos)
                if bool(done.all()):
                    break
            cache_position = torch.tensor([length + k - 1], device=device)
            token = self._drawn(pick, step(token, position, cache_position, full, cache, True)) if sampling \
                else step(token, position, cache_position, full, cache)
            if eos is not None:
                token = torch.where(done, torch.full_like(token, pad_token_id if pad_token_id is not None else 0),
                                    token)
            position = position + 1
            tokens.append(token)
        return torch.cat([input_ids, *tokens], dim=1)

    @staticmethod
    def _drawn(pick: TokenPicker, logits: torch.Tensor) -> torch.Tensor:
        """(batch, 1) tokens ``pick`` draws from (batch, vocabulary) logits, on the logits' device."""
        return torch.from_numpy(pick(logits.cpu().numpy())).to(logits.device)

    def warm_up(self, ctx: BuildContext) -> float:
        """Compile the step for the batch sizes the workload runs (full and a remainder of 1) on
        calibration prompts, greedy or sampling as the workload decodes; seconds taken."""
        start = time.perf_counter()
        data = ctx.calib_data(2 * ctx.batch_size)
        for size in dict.fromkeys((ctx.batch_size, 1)):
            ctx.workload.predict(self, data, ctx.settings.with_(batch_size=size))
        return round(time.perf_counter() - start, 2)


def causal_lm_of(model: nn.Module) -> nn.Module:
    """The causal LM under bf16-cast's input-casting wrapper, else ``model``: the wrapper only casts
    float inputs, and the decode loop feeds token ids and masks, so the cast model is what runs."""
    from accelkit.runtimes.torch_eager import CastInputs

    return model.model if isinstance(model, CastInputs) else model


@register_technique("static-cache-compile", group="runtime", description="static KV cache + torch.compile'd "
                    "one-token decode step in a lean loop, greedy or sampling (compile time in details.compile_s); composes "
                    "after int8-weight-only, int8-dynamic, bf16-cast", needs=("generate",),
                    accepts=("eager", "eager-lowp", "quantized"), produces="graph",
                    objectives=("throughput", "latency"), saveable=False, config=StaticCacheConfig)
def _static_cache_compile(model: nn.Module, ctx: BuildContext, config: StaticCacheConfig) -> Built:
    model = causal_lm_of(model)
    config_of = getattr(model, "config", None)
    if config_of is None or not callable(getattr(model, "generate", None)):
        raise ConfigError(f"static-cache-compile needs a transformers causal LM (with .config and generate); got "
                          f"a {type(model).__name__}")
    runner = StaticCacheGenerator(model, config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compile_s = runner.warm_up(ctx)
    return Built(runner, ctx.settings, {"decode": "static cache, lean loop",
                                        "compiled_step": config.compile, "cache_bucket": config.bucket,
                                        "compile_s": compile_s})
