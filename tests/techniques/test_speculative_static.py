"""speculative-compiled: drafting over one static cache and verifying over another writes exactly
``model.generate``'s greedy tokens (tiny random Llama, Qwen2, GPT-2; bf16 and first-layers drafts,
a draft that always agrees and one that rarely does, so both cache rewinds run; EOS stops as
generate's does); batch > 1 runs the plain static-cache loop; bad config is refused in one line."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch

from accelkit.errors import ConfigError
from accelkit.techniques.registry import get_technique
from accelkit.techniques.speculative_static import (
    CompiledSpeculativeConfig,
    CompiledSpeculativeGenerator,
    make_draft,
)
from accelkit.techniques.static_cache import StaticCacheConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import model_folders as mf  # noqa: E402

N_NEW = 13
EAGER = StaticCacheConfig(compile=False, bucket=16)


def _greedy(model, ids, **extra):
    with torch.inference_mode():
        return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=N_NEW,
                              do_sample=False, pad_token_id=0, **{"eos_token_id": None, **extra})


def _ids(seed: int = 2) -> torch.Tensor:
    return torch.randint(1, 100, (1, 7), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gpt2"])
def test_every_draft_gives_the_models_own_greedy_tokens(kind):
    model = mf.tiny_causal_lm(kind)
    ids = _ids()
    ref = _greedy(model, ids)
    drafts = {"bf16": make_draft(model, CompiledSpeculativeConfig(draft="bf16")),
              "layers": make_draft(model, CompiledSpeculativeConfig(draft="layers", exit_layer=1)),
              "same": copy.deepcopy(model),  # accepts every draft: the draft cache is fed its last draft
              "other": mf.tiny_causal_lm(kind, seed=5)}  # rejects most: both caches are rewound
    for name, draft in drafts.items():
        for tokens in (1, 3):
            runner = CompiledSpeculativeGenerator(model, draft, CompiledSpeculativeConfig(draft_tokens=tokens,
                                                                                          step=EAGER))
            with torch.inference_mode():
                for _ in range(2):  # the second call reuses (and clears) the first call's caches
                    out = runner.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=N_NEW,
                                          pad_token_id=0, eos_token_id=None)
                    assert torch.equal(out, ref), (name, tokens)
            if name == "same":
                assert runner.stats["accepted"] == tokens * runner.stats["rounds"]
            if name == "other":
                assert runner.stats["accepted"] < tokens * runner.stats["rounds"]


def test_eos_stops_as_generate_does_and_batches_run_the_static_loop():
    model = mf.tiny_causal_lm("llama")
    ids = _ids()
    runner = CompiledSpeculativeGenerator(model, make_draft(model, CompiledSpeculativeConfig()),
                                          CompiledSpeculativeConfig(draft_tokens=3, step=EAGER))
    eos = int(_greedy(model, ids)[0, 7 + 5])
    with torch.inference_mode():
        out = runner.generate(input_ids=ids, max_new_tokens=N_NEW, pad_token_id=0, eos_token_id=eos)
    assert torch.equal(out, _greedy(model, ids, eos_token_id=eos))
    batch = torch.cat([ids, _ids(3)])
    with torch.inference_mode():
        out = runner.generate(input_ids=batch, attention_mask=torch.ones_like(batch), max_new_tokens=N_NEW,
                              pad_token_id=0, eos_token_id=None)
        ref = model.generate(input_ids=batch, attention_mask=torch.ones_like(batch), max_new_tokens=N_NEW,
                             do_sample=False, pad_token_id=0, eos_token_id=None)
    assert torch.equal(out, ref)
    assert runner.stats["rounds"] > 0


def test_config_is_validated_and_the_technique_registered():
    with pytest.raises(ConfigError, match="draft='int4'"):
        CompiledSpeculativeConfig(draft="int4")
    with pytest.raises(ConfigError, match="draft_tokens=0"):
        CompiledSpeculativeConfig(draft_tokens=0)
    with pytest.raises(ConfigError, match="exit_layer=0"):
        CompiledSpeculativeConfig(exit_layer=0)
    config = CompiledSpeculativeConfig.from_dict({"draft": "layers", "step": {"compile": False}})
    assert config.step == StaticCacheConfig(compile=False)
    assert not get_technique("speculative-compiled").saveable


@pytest.mark.slow
def test_compiled_steps_give_the_models_own_greedy_tokens():
    model = mf.tiny_causal_lm("llama")
    ids = _ids()
    runner = CompiledSpeculativeGenerator(model, make_draft(model, CompiledSpeculativeConfig()),
                                          CompiledSpeculativeConfig(draft_tokens=3))
    with torch.inference_mode():
        for _ in range(2):
            out = runner.generate(input_ids=ids, max_new_tokens=N_NEW, pad_token_id=0, eos_token_id=None)
            assert torch.equal(out, _greedy(model, ids))
