"""OpenVINO as the runtime of a causal LM writing text: the stateful graph of
``accelkit.export.openvino_lm`` compiled for the CPU and driven by a lean decoding loop (greedy
or sampled; greedy decoding optionally verifying prompt-lookup drafts); saved as OpenVINO's own
files (``model.xml``, ``model.bin``), so a shipped folder generates without torch running the model."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from accelkit._lazy import is_available, require
from accelkit._threads import available_cpus
from accelkit.config import Config
from accelkit.errors import ConfigError
from accelkit.runtimes.base import Runtime, RuntimeRecord
from accelkit.runtimes.decoding import (
    TokenPicker,
    UnsupportedDecoding,
    decoding_defaults,
    eos_and_pad,
    lean_decoding,
)
from accelkit.runtimes.onnxruntime import OrtConfig
from accelkit.runtimes.prompt_lookup import NgramStore, best_draft
from accelkit.runtimes.registry import register_runtime
from accelkit.signal_stack import keep_signal_stack

__all__ = ["OpenVinoLm", "OpenVinoLmConfig"]

_PRECISIONS = ("f32", "bf16")
_CACHES = ("f32", "f16", "u8")


@dataclass
class OpenVinoLmConfig(Config):
    """``precision``: OpenVINO's inference precision, "f32" or "bf16" (a CPU with native bf16);
    ``kv_cache``: the precision the key/value cache is kept in ("f32", "f16", "u8"; OpenVINO's
    own default on a CPU is a smaller one than f32); ``threads``: None for accelkit's count here;
    ``lookup_tokens``: at most this many prompt-lookup drafts verified per call in greedy batch-1
    decoding (0: none; the graph must return every position's logits), found by matching the
    row's last ``lookup_ngram`` ids or fewer; ``lookup_batch_tokens``: the same for a batch of
    several rows (0: the plain loop), where a call costs more for each column it reads."""

    _omit_at_default = ("lookup_tokens", "lookup_ngram", "lookup_batch_tokens")

    precision: str = "f32"
    kv_cache: str = "f32"
    threads: int | None = None
    version: int = 1
    lookup_tokens: int = 0
    lookup_ngram: int = 3
    lookup_batch_tokens: int = 0

    def __post_init__(self) -> None:
        for name, allowed in (("precision", _PRECISIONS), ("kv_cache", _CACHES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r}: expected one of {', '.join(allowed)}")
        for name, low in (("lookup_tokens", 0), ("lookup_ngram", 1), ("lookup_batch_tokens", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 16:
                raise ConfigError(f"{name}={value!r}: expected a whole number from {low} to 16")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise ConfigError(f"threads={self.threads!r}: expected None or a positive number of threads")


@register_runtime
class OpenVinoLm(Runtime):
    """A stateful causal-LM graph called like the model's ``generate`` (greedy or sampling);
    ``model``: the torch model, kept for ``generate`` options the loop does not follow (absent once
    loaded); ``decoding``: what the model's generation config asks of decoding, its EOS and pad ids
    included (``accelkit.runtimes.decoding.decoding_defaults``; by default read from ``model``)."""

    name = "openvino-lm"
    form = "openvino-lm"
    family = "openvino"
    model_file = "model.xml"
    computes_outside_torch = True
    devices = ("cpu",)

    def __init__(self, graph: Any, config: OpenVinoLmConfig | None = None, *, model: Any = None,
                 decoding: Mapping[str, Any] | None = None, details: Mapping[str, Any] | None = None,
                 lookup_store: NgramStore | None = None) -> None:
        ov = require("openvino", "openvino")
        self.lookup_store = lookup_store
        self.config = config or OpenVinoLmConfig()
        self.model, self._graph, self.device = model, graph, "cpu"
        self.decoding = dict(decoding) if decoding is not None else \
            decoding_defaults(getattr(model, "generation_config", None))
        threads = self.config.threads or OrtConfig().threads()
        settings: dict[str, Any] = {"INFERENCE_PRECISION_HINT": self.config.precision,
                                    "KV_CACHE_PRECISION": self.config.kv_cache, "INFERENCE_NUM_THREADS": threads,
                                    "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
        if threads < available_cpus():
            settings["ENABLE_CPU_PINNING"] = False  # other processes beside this one need the other cores
        with keep_signal_stack():  # compile_model swaps in a signal stack it later frees
            self._compiled = ov.Core().compile_model(graph, "CPU", settings)
        self._request = self._compiled.create_infer_request()
        # (batch, new tokens, vocabulary): logits at every position read, as verifying drafts needs
        self._all_logits = self._compiled.output(0).get_partial_shape().rank.get_length() == 3
        if self.config.lookup_tokens and not self._all_logits:
            raise ConfigError("lookup_tokens needs a graph that returns every position's logits; export it with "
                              "export_stateful_lm(model, all_logits=True)")
        self._threads = threads
        self._size: int | None = None
        self.extra: dict[str, Any] = dict(details or {})

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None if is_available("openvino") else "openvino is not installed (pip install openvino)"

    def describe(self) -> RuntimeRecord:
        return RuntimeRecord(self.name, self.device, self.config.precision, 1, self._threads, dict(self.extra))

    def run(self, *args: Any, **kwargs: Any) -> Any:
        raise ConfigError("the OpenVINO generation graph returns each row's last logits only; call "
                          "generate, or run the torch model for logits")

    def generate(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                 **kwargs: Any) -> torch.Tensor:
        """``model.generate``'s result (prompt and new tokens, one row per prompt), greedy or sampled
        (temperature, top-k, top-p, min-p; seed torch's generator for the same draws as generate);
        EOS (the call's ``eos_token_id``, else the model's) stops a row, later columns
        ``pad_token_id``, as generate does."""
        try:
            pick = lean_decoding(input_ids, kwargs, self.decoding)
        except UnsupportedDecoding as exc:
            if self.model is None:
                raise UnsupportedDecoding(f"{exc}: a saved OpenVINO generation model decodes greedily or samples "
                                          "(temperature, top_k, top_p, min_p) only; run the original model for "
                                          "this") from None
            return self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        eos, pad = eos_and_pad(kwargs, self.decoding)
        return self.decode(input_ids, attention_mask, kwargs["max_new_tokens"], pick=pick, eos_token_id=eos,
                           pad_token_id=pad)

    def decode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, max_new_tokens: int, *,
               pick: TokenPicker | None = None, eos_token_id: int | list[int] | None = None,
               pad_token_id: int | None = None) -> torch.Tensor:
        """``max_new_tokens`` tokens after each row of ``input_ids`` (left-padded as ``attention_mask``
        says), each picked by ``pick`` (greedy when None) from the row's last logits; a row that
        wrote ``eos_token_id`` is padded with ``pad_token_id`` from then on and, when greedy, no
        longer computed."""
        pick = pick or TokenPicker()
        if max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens={max_new_tokens}: expected a positive number of tokens to write")
        ids = input_ids.cpu().numpy().astype(np.int64)
        batch, length = ids.shape
        mask = np.ones_like(ids) if attention_mask is None else attention_mask.cpu().numpy().astype(np.int64)
        eos = np.asarray([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)) \
            if eos_token_id is not None else None
        drafts = self.config.lookup_tokens if batch == 1 else self.config.lookup_batch_tokens
        if drafts and self.config.lookup_tokens and not pick.do_sample:
            new = self._lookup_decode(ids, mask, max_new_tokens, drafts, eos,
                                      pad_token_id if pad_token_id is not None else 0)
            return torch.cat([input_ids, torch.from_numpy(new).to(input_ids.device, input_ids.dtype)], dim=1)
        # the mask over everything read so far: the prompt's, then one column per token written
        full = np.ones((batch, length + max_new_tokens), dtype=np.int64)
        full[:, :length] = mask
        # left padding: a row's positions count its real tokens only, as generate numbers them
        positions = np.clip(mask.cumsum(-1) - 1, 0, None)
        beam = np.arange(batch, dtype=np.int32)
        request = self._request
        request.reset_state()  # a new batch of prompts starts from an empty cache
        token = pick(self._last(request.infer({"input_ids": ids, "attention_mask": mask, "position_ids": positions,
                                               "beam_idx": beam})))
        pad = pad_token_id if pad_token_id is not None else 0
        written = np.full((batch, max_new_tokens), pad, dtype=np.int64)
        written[:, 0] = token[:, 0]
        rows = np.arange(batch)  # the prompt each row of the cache belongs to
        position = positions[:, -1:] + 1
        done = np.zeros((batch, 1), dtype=bool)  # rows that wrote EOS (greedy ones leave the batch)
        steps = max_new_tokens  # fewer when every row ends sooner
        for k in range(1, max_new_tokens):
            gather = beam
            if eos is not None:
                done |= np.isin(token, eos)
                if done.all():
                    steps = k
                    break
                if done.any() and not pick.do_sample:
                    # a finished row leaves the batch: this call's beam_idx gathers only the cache rows
                    # still writing, so no later step computes it (generate computes every row until
                    # the last one ends). Sampling keeps every row, to draw generate's random numbers.
                    live = ~done[:, 0]
                    gather = np.flatnonzero(live).astype(np.int32)
                    rows, token, position, full, done = rows[live], token[live], position[live], full[live], done[live]
                    beam = np.arange(len(rows), dtype=np.int32)
            token = pick(self._last(request.infer({"input_ids": token,
                                                   "attention_mask": np.ascontiguousarray(full[:, :length + k]),
                                                   "position_ids": position, "beam_idx": gather})))
            if eos is not None:
                token = np.where(done, pad, token)
            written[rows, k] = token[:, 0]
            position = position + 1
        new = torch.from_numpy(written[:, :steps]).to(input_ids.device, input_ids.dtype)
        return torch.cat([input_ids, new], dim=1)

    def _last(self, out: Any) -> np.ndarray:
        logits = out["logits"]
        return logits[:, -1] if self._all_logits else logits

    def _lookup_decode(self, ids: np.ndarray, mask: np.ndarray, max_new_tokens: int, drafts: int,
                       eos: np.ndarray | None, pad: int) -> np.ndarray:
        """Greedy tokens after each row of ``ids`` (left-padded as ``mask`` says), several a call
        where they can be guessed: each call reads every row's last token and up to ``drafts``
        guesses after it, and keeps a row's guesses while they equal the model's own argmax at
        their place, then its argmax after them. A call reads as many columns as its longest
        draft; a rejected or unused slot's keys stay in the cache masked out (cheaper than cutting
        OpenVINO's state), so a call's slots are causal in cache order while ``position_ids``
        count each row's kept tokens."""
        ngram = self.config.lookup_ngram
        batch, length = ids.shape
        beam = np.arange(batch, dtype=np.int32)
        full = np.zeros((batch, length + max_new_tokens * (drafts + 1)), dtype=np.int64)
        full[:, :length] = mask
        real = mask.sum(-1)
        contexts = [np.zeros(int(n) + max_new_tokens, dtype=np.int64) for n in real]
        out = np.full((batch, max_new_tokens), pad, dtype=np.int64)
        request = self._request
        request.reset_state()
        logits = request.infer({"input_ids": ids, "attention_mask": mask, "beam_idx": beam,
                                "position_ids": np.clip(mask.cumsum(-1) - 1, 0, None)})["logits"]
        out[:, 0] = logits[:, -1].argmax(-1)
        written = np.ones(batch, dtype=np.int64)
        for r, context in enumerate(contexts):  # left padding: the real ids end the row
            context[:real[r]] = ids[r, length - real[r]:]
            context[real[r]] = out[r, 0]
        live = written < max_new_tokens
        if eos is not None:
            live &= ~np.isin(out[:, 0], eos)
        slots = length
        while live.any():
            guesses = [best_draft(contexts[r][:real[r] + written[r]], min(drafts, max_new_tokens - written[r] - 1),
                                  ngram, self.lookup_store) if live[r] else contexts[r][:0] for r in range(batch)]
            n = 1 + max(len(g) for g in guesses)
            feed = np.zeros((batch, n), dtype=np.int64)
            for r, guess in enumerate(guesses):
                feed[r, 0] = contexts[r][real[r] + written[r] - 1]
                feed[r, 1:1 + len(guess)] = guess
                full[r, slots:slots + 1 + len(guess)] = live[r]
            # the last token written sits at the row's real length + written - 1
            positions = (real + written - 1)[:, None] + np.arange(n)[None]
            picks = request.infer({"input_ids": feed, "attention_mask": full[:, :slots + n],
                                   "position_ids": positions, "beam_idx": beam})["logits"].argmax(-1)
            for r in np.flatnonzero(live):
                guess, kept = guesses[r], 0
                while kept < len(guess) and guess[kept] == picks[r, kept]:
                    kept += 1
                full[r, slots + kept + 1:slots + n] = 0
                new = picks[r, :kept + 1]  # the kept guesses equal the picks before them
                if eos is not None:
                    stops = np.flatnonzero(np.isin(new, eos))
                    if stops.size:
                        new, live[r] = new[:stops[0] + 1], False
                contexts[r][real[r] + written[r]:real[r] + written[r] + len(new)] = new
                out[r, written[r]:written[r] + len(new)] = new
                written[r] += len(new)
                live[r] &= written[r] < max_new_tokens
            slots += n
        return out[:, :written.max()]  # as generate: it stops once every row has stopped

    def save(self, folder: Path) -> dict[str, Any]:
        ov = require("openvino", "openvino")
        ov.save_model(self._graph, str(folder / self.model_file), compress_to_fp16=False)  # writes model.bin beside
        fields = {"runtime": self.name, "device": self.device, "openvino_lm": self.config.to_dict(),
                  "decoding": dict(self.decoding), "runtime_extra": dict(self.extra)}
        if self.lookup_store is not None:
            self.lookup_store.save(folder / NgramStore.file_name)
            fields["lookup_store"] = NgramStore.file_name
        return fields

    @classmethod
    def load(cls, folder: Path, fields: Mapping[str, Any], *, baseline: Any = None) -> OpenVinoLm:
        ov = require("openvino", "openvino")
        graph = ov.Core().read_model(str(folder / cls.model_file))
        store = fields.get("lookup_store")
        if store is not None and (not isinstance(store, str) or Path(store).name != store):
            raise ConfigError(f"lookup_store={store!r}: expected a file name inside the model folder")
        return cls(graph, OpenVinoLmConfig.from_dict(fields.get("openvino_lm") or {}),
                   decoding=fields.get("decoding"), details=fields.get("runtime_extra"),
                   lookup_store=NgramStore.load(folder / store) if store else None)

    @property
    def serialized_size_bytes(self) -> int:
        if self._size is None:
            with tempfile.TemporaryDirectory(prefix="accelkit-ov-lm-") as tmp:
                self.save(Path(tmp))
                self._size = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp))
        return self._size
