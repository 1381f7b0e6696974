"""When a runtime's own decoding loop may stand in for ``model.generate``, and how it picks each
token as ``generate`` would: greedy, or sampling through transformers' own temperature, top-k,
top-p and min-p warpers and torch's global generator, so a seeded call draws ``generate``'s tokens.

A loop follows a call only when nothing else in it, or in the model's generation config, would
change a token (a repetition penalty, banned words, beams ...); those calls go to the model's
``generate``, or are refused where no torch model is left (a loaded folder).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from accelkit.errors import ConfigError

__all__ = ["DECODING_OPTIONS", "TokenPicker", "UnsupportedDecoding", "decoding_defaults", "eos_and_pad",
           "lean_decoding", "lean_greedy"]

# generate options a lean loop follows; any other (beams, streamers, output_scores ...) needs generate
DECODING_OPTIONS = frozenset({"max_new_tokens", "do_sample", "num_beams", "pad_token_id", "eos_token_id",
                              "temperature", "top_k", "top_p", "min_p"})
# generate's own defaults for what the picker reads (transformers 5 keeps them out of the model's config)
_PICKING = {"do_sample": False, "temperature": 1.0, "top_k": 50, "top_p": 1.0, "min_p": None}
# generation-config fields that change tokens in greedy decoding too, with the values that do not
_PROCESSORS = {"repetition_penalty": (1.0,), "encoder_repetition_penalty": (1.0,), "no_repeat_ngram_size": (0,),
               "encoder_no_repeat_ngram_size": (0,), "bad_words_ids": (), "min_length": (0,), "min_new_tokens": (0,),
               "suppress_tokens": (), "begin_suppress_tokens": (), "forced_bos_token_id": (),
               "forced_eos_token_id": (), "exponential_decay_length_penalty": (), "sequence_bias": (),
               "guidance_scale": (1.0,), "renormalize_logits": (False,), "remove_invalid_values": (False,),
               "watermarking_config": ()}
# ... and those that change them only when sampling
_WARPERS = {"typical_p": (1.0,), "epsilon_cutoff": (0.0,), "eta_cutoff": (0.0,), "top_h": ()}


class UnsupportedDecoding(ConfigError):
    """A generate call (or the model's generation config) asks for what a lean loop does not do."""


def _active(values: Mapping[str, Any], neutral: Mapping[str, tuple]) -> list[str]:
    return sorted(k for k, keep in neutral.items() if values.get(k) is not None and values[k] not in keep)


def decoding_defaults(generation_config: Any) -> dict[str, Any]:
    """What a loop needs of a model's generation config (a transformers ``GenerationConfig``, its
    dict, or None): the picking defaults, its EOS and pad ids, and the names of the fields that
    would change tokens (``processors``; ``warpers``: only when sampling). JSON-able, so a saved
    plan keeps it."""
    if generation_config is None:
        values: Mapping[str, Any] = {}
    elif isinstance(generation_config, Mapping):
        values = generation_config
    else:
        values = generation_config.to_dict()
    out = {k: values[k] if values.get(k) is not None else default for k, default in _PICKING.items()}
    out["eos_token_id"], out["pad_token_id"] = values.get("eos_token_id"), values.get("pad_token_id")
    out["processors"], out["warpers"] = _active(values, _PROCESSORS), _active(values, _WARPERS)
    return out


def eos_and_pad(options: Mapping[str, Any], defaults: Mapping[str, Any]) -> tuple[int | list[int] | None, int]:
    """The EOS id(s) that stop a row and the id written after, as ``generate`` resolves them: the
    call's own, else the generation config's (``decoding_defaults``); the pad id falls back to the
    first EOS id, then 0."""
    eos = options["eos_token_id"] if "eos_token_id" in options else defaults.get("eos_token_id")
    pad = options.get("pad_token_id", defaults.get("pad_token_id"))
    if pad is None and eos is not None:
        pad = eos if isinstance(eos, int) else next(iter(eos), None)
    return eos, 0 if pad is None else int(pad)


@dataclass(frozen=True)
class TokenPicker:
    """Picks each row's next token from its last logits: the argmax, or a draw from the softmax of
    the warped logits with torch's global generator (``generate``'s own order: temperature, top-k,
    top-p, min-p)."""

    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = 50
    top_p: float = 1.0
    min_p: float | None = None

    def __post_init__(self) -> None:
        if self.do_sample and not self.temperature > 0:
            raise UnsupportedDecoding(f"temperature={self.temperature}: expected > 0 when sampling "
                                      "(for greedy decoding pass do_sample=False)")

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        """(batch, 1) int64 token ids from (batch, vocabulary) logits."""
        if not self.do_sample:
            return logits.argmax(-1)[:, None].astype(np.int64)
        scores = torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32))
        for warp in self._warpers():
            scores = warp(None, scores)
        probs = torch.nn.functional.softmax(scores, dim=-1)
        return torch.multinomial(probs, num_samples=1).numpy().astype(np.int64)

    def _warpers(self) -> list[Any]:
        from transformers.generation import (
            MinPLogitsWarper,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        warpers: list[Any] = []
        if self.temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(self.temperature))
        if self.top_k:
            warpers.append(TopKLogitsWarper(top_k=self.top_k, min_tokens_to_keep=1))
        if self.top_p < 1.0:
            warpers.append(TopPLogitsWarper(top_p=self.top_p, min_tokens_to_keep=1))
        if self.min_p is not None:
            warpers.append(MinPLogitsWarper(min_p=self.min_p, min_tokens_to_keep=1))
        return warpers


def lean_decoding(input_ids: Any, options: Mapping[str, Any], defaults: Mapping[str, Any] | None = None, *,
                  can_sample: bool = True) -> TokenPicker:
    """The picker for a ``generate(input_ids, **options)`` call that a lean loop follows exactly,
    given the model's ``decoding_defaults``; raises UnsupportedDecoding naming what it cannot
    follow (the caller runs the model's own ``generate``, or refuses). ``can_sample``: False for a
    loop whose graph returns tokens, not logits."""
    defaults = defaults if defaults is not None else decoding_defaults(None)
    if input_ids is None or "max_new_tokens" not in options:
        raise UnsupportedDecoding("a lean loop needs input_ids and max_new_tokens")
    other = sorted(set(options) - DECODING_OPTIONS)
    if options.get("num_beams", 1) != 1:
        other.append("num_beams")
    if other or defaults.get("processors"):
        raise UnsupportedDecoding(f"generate option(s) {', '.join(other or defaults['processors'])}")
    # the call's value where it names one, else the model's; unset (None): generate's own default
    picking = {k: options[k] if k in options else defaults.get(k) for k in _PICKING}
    picking = {k: default if picking[k] is None else picking[k] for k, default in _PICKING.items()}
    if picking["do_sample"]:
        if not can_sample:
            raise UnsupportedDecoding("do_sample (this loop's graph returns tokens, not logits)")
        if defaults.get("warpers"):
            raise UnsupportedDecoding(f"sampling with {', '.join(defaults['warpers'])}")
    return TokenPicker(bool(picking["do_sample"]), float(picking["temperature"]),
                       int(picking["top_k"]) if picking["top_k"] else None, float(picking["top_p"]),
                       None if picking["min_p"] is None else float(picking["min_p"]))


def lean_greedy(input_ids: Any, options: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> bool:
    """Whether a loop that writes argmax tokens (no logits) follows ``generate(input_ids, **options)``
    of a model with ``defaults`` (its ``decoding_defaults``) exactly; if not, the call goes to the
    model's generate."""
    try:
        lean_decoding(input_ids, options, defaults, can_sample=False)
    except UnsupportedDecoding:
        return False
    return True
