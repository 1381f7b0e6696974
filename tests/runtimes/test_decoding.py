"""runtimes.decoding: a lean loop follows a generate call only when nothing in the call or the
model's generation config would change a token, and its picker draws generate's tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import GenerationConfig

from accelkit.errors import ConfigError
from accelkit.runtimes.decoding import (
    TokenPicker,
    UnsupportedDecoding,
    decoding_defaults,
    eos_and_pad,
    lean_decoding,
    lean_greedy,
)

IDS = torch.ones(2, 3, dtype=torch.long)


def test_defaults_are_generates_and_name_what_would_change_tokens():
    plain = decoding_defaults(GenerationConfig())
    assert plain == {"do_sample": False, "temperature": 1.0, "top_k": 50, "top_p": 1.0, "min_p": None,
                     "eos_token_id": None, "pad_token_id": None, "processors": [], "warpers": []}
    assert decoding_defaults(None) == plain
    odd = decoding_defaults(GenerationConfig(do_sample=True, top_p=0.9, repetition_penalty=1.2, typical_p=0.5))
    assert odd["do_sample"] and odd["top_p"] == 0.9
    assert odd["processors"] == ["repetition_penalty"] and odd["warpers"] == ["typical_p"]


def test_lean_decoding_follows_greedy_and_sampling_calls_and_names_what_it_cannot():
    greedy = lean_decoding(IDS, {"max_new_tokens": 4, "pad_token_id": 0, "eos_token_id": None})
    assert greedy == TokenPicker(do_sample=False)
    sampled = lean_decoding(IDS, {"max_new_tokens": 4, "do_sample": True, "temperature": 0.5, "top_k": 0})
    assert sampled == TokenPicker(True, 0.5, None, 1.0, None)
    # the model's config samples by default; the call's own options come first
    sampling_model = decoding_defaults(GenerationConfig(do_sample=True, top_k=7))
    assert lean_decoding(IDS, {"max_new_tokens": 4}, sampling_model).top_k == 7
    assert not lean_decoding(IDS, {"max_new_tokens": 4, "do_sample": False}, sampling_model).do_sample
    for options, named in (({"max_new_tokens": 4, "num_beams": 2}, "num_beams"),
                           ({"max_new_tokens": 4, "streamer": object()}, "streamer"),
                           ({"max_new_tokens": 4, "do_sample": True, "temperature": 0.0}, "temperature=0.0")):
        with pytest.raises(UnsupportedDecoding, match=named):
            lean_decoding(IDS, options)
    with pytest.raises(UnsupportedDecoding, match="repetition_penalty"):
        lean_decoding(IDS, {"max_new_tokens": 4}, decoding_defaults(GenerationConfig(repetition_penalty=1.2)))
    with pytest.raises(UnsupportedDecoding, match="typical_p"):
        lean_decoding(IDS, {"max_new_tokens": 4, "do_sample": True},
                      decoding_defaults(GenerationConfig(typical_p=0.5)))
    with pytest.raises(UnsupportedDecoding, match="tokens, not logits"):
        lean_decoding(IDS, {"max_new_tokens": 4, "do_sample": True}, can_sample=False)
    assert issubclass(UnsupportedDecoding, ConfigError)


def test_eos_and_pad_are_the_calls_else_the_configs_and_pad_falls_back_to_eos():
    config = decoding_defaults(GenerationConfig(eos_token_id=[7, 9], pad_token_id=None))
    assert eos_and_pad({}, config) == ([7, 9], 7)
    assert eos_and_pad({"eos_token_id": None, "pad_token_id": 3}, config) == (None, 3)
    assert eos_and_pad({"eos_token_id": 5}, decoding_defaults(GenerationConfig(pad_token_id=2))) == (5, 2)
    assert eos_and_pad({}, decoding_defaults(None)) == (None, 0)


def test_lean_greedy_reads_the_models_config_as_generate_does():
    assert lean_greedy(IDS, {"max_new_tokens": 4, "do_sample": False})
    assert not lean_greedy(IDS, {"max_new_tokens": 4}, decoding_defaults(GenerationConfig(do_sample=True)))
    assert not lean_greedy(IDS, {"max_new_tokens": 4}, decoding_defaults(GenerationConfig(no_repeat_ngram_size=3)))
    assert not lean_greedy(None, {"max_new_tokens": 4})


def test_the_picker_draws_what_generates_warpers_and_multinomial_draw():
    from transformers.generation import (
        LogitsProcessorList,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    logits = np.random.default_rng(0).normal(size=(4, 50)).astype(np.float32)
    assert np.array_equal(TokenPicker()(logits)[:, 0], logits.argmax(-1))
    warpers = LogitsProcessorList([TemperatureLogitsWarper(0.7), TopKLogitsWarper(10), TopPLogitsWarper(0.9)])
    torch.manual_seed(11)
    want = torch.multinomial(torch.softmax(warpers(None, torch.from_numpy(logits)), -1), 1).numpy()
    torch.manual_seed(11)
    got = TokenPicker(True, 0.7, 10, 0.9)(logits)
    assert got.dtype == np.int64 and np.array_equal(got, want)
