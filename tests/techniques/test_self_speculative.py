"""self-speculative: the model's first k layers draft and all layers verify, so greedy output is
exactly the model's own (tiny random Llama, GPT-2 and Qwen2, every k; through bench on a
text-generation workload, k picked on calibration prompts); the draft view shares the model's
weights and leaves the model whole; a model without a list of decoder layers is refused in one line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from accelkit.errors import ConfigError
from accelkit.techniques.self_speculative import (
    SelfSpeculativeConfig,
    configure_draft,
    decoder_layers,
    early_exit_view,
    expected_speedup,
)
from accelkit.techniques.speculative import AssistedGeneration
from accelkit.workloads import workload_from_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import model_folders as mf  # noqa: E402

N_NEW = 12


def _greedy(model, ids, **extra):
    with torch.inference_mode():
        return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=N_NEW,
                              do_sample=False, eos_token_id=None, pad_token_id=0, **extra)


@pytest.mark.parametrize("kind", ["llama", "gpt2", "qwen2"])
def test_every_exit_layer_writes_the_models_own_greedy_tokens(kind):
    model = mf.tiny_causal_lm(kind)
    ids = torch.randint(1, 100, (1, 7), generator=torch.Generator().manual_seed(2))
    ref = _greedy(model, ids)
    for k in (1, 2):
        draft = early_exit_view(model, k)
        configure_draft(draft, 3)
        assert torch.equal(AssistedGeneration(model, draft).generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=N_NEW, do_sample=False,
            eos_token_id=None, pad_token_id=0), ref)
        # the view shares the weights and is cut; the model keeps every layer and its own config
        assert len(decoder_layers(draft)[2]) == k and draft.config.num_hidden_layers == k
        assert draft.get_output_embeddings().weight is model.get_output_embeddings().weight
        assert draft.generation_config is not model.generation_config
    assert len(decoder_layers(model)[2]) == 3 and model.config.num_hidden_layers == 3
    assert model.generation_config.num_assistant_tokens != 3
    assert torch.equal(_greedy(model, ids), ref)


def test_through_bench_output_is_identical_and_k_is_recorded(tmp_path):
    from accelkit.bench import bench

    wl = workload_from_model(mf.llama_folder(tmp_path, layers=4), mf.prompts_file(tmp_path, 8),
                             task="text-generation", max_new_tokens=N_NEW)
    res = bench(wl, ["self-speculative"], repeats=1, warmup=0, roofline=False, memory=False, flops=False,
                keep_built=True)
    v = {v.name: v for v in res.variants}["self-speculative"]
    assert v.error is None, v.error
    assert v.quality["greedy_agreement"] == 1.0 and v.quality["identical_outputs"] == 1.0
    assert 1 <= v.details["exit_layer"] <= 3 and 1 <= v.details["draft_tokens"] <= 8
    assert 0.0 <= v.details["acceptance_rate"] <= 1.0 and set(v.details["acceptance_by_exit_layer"]) == {"1", "2", "3"}
    assert v.details["batch_size"] == 1 and 0 < v.details["draft_cost"] <= 1


def test_a_model_without_decoder_layers_is_refused_in_one_line(tmp_path, monkeypatch):
    from accelkit.bench import bench

    folder = mf.llama_folder(tmp_path)
    (tmp_path / "wrapped_lm.py").write_text(
        "from torch import nn\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f"FOLDER = {str(folder)!r}\n"
        "class Wrapped(nn.Module):\n"
        "    def __init__(self, inner):\n"
        "        super().__init__()\n"
        "        self.inner = inner\n"
        "    def forward(self, *a, **k):\n"
        "        return self.inner(*a, **k)\n"
        "    def generate(self, *a, **k):\n"
        "        return self.inner.generate(*a, **k)\n"
        "def make():\n"
        "    return {'model': Wrapped(AutoModelForCausalLM.from_pretrained(FOLDER)), 'tokenizer': "
        "AutoTokenizer.from_pretrained(FOLDER), 'task': 'text-generation'}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    wl = workload_from_model("wrapped_lm:make", mf.prompts_file(tmp_path, 8), max_new_tokens=3)
    res = bench(wl, ["self-speculative"], repeats=1, warmup=0, roofline=False, memory=False, flops=False)
    error = {v.name: v for v in res.variants}["self-speculative"].error
    assert "no base model with a list of config.num_hidden_layers decoder layers" in error and "\n" not in error
    with pytest.raises(ConfigError, match="use speculative with --draft instead"):
        decoder_layers(nn.Linear(2, 2))


def test_bad_exit_layers_and_configs_are_refused():
    model = mf.tiny_causal_lm("llama")
    for k in (0, 3):
        with pytest.raises(ConfigError, match="pick 1 to 2"):
            early_exit_view(model, k)
    with pytest.raises(ConfigError, match="exit_layer=0"):
        SelfSpeculativeConfig(exit_layer=0)
    with pytest.raises(ConfigError, match="draft_tokens=17"):
        SelfSpeculativeConfig(draft_tokens=17)
    with pytest.raises(ConfigError, match="probe_prompts"):
        SelfSpeculativeConfig(probe_prompts=0)


def test_the_cost_model_prefers_drafting_only_when_drafts_are_accepted():
    assert expected_speedup(0.0, 0.3, 1) < 1.0  # every draft rejected: pure overhead
    assert expected_speedup(0.9, 0.3, 4) > 1.5
    assert expected_speedup(1.0, 0.0, 4) == 5.0


def test_after_a_precision_step_it_writes_that_models_own_tokens(tmp_path):
    from accelkit.techniques.registry import build_plan

    wl = workload_from_model(mf.llama_folder(tmp_path, layers=3), mf.prompts_file(tmp_path, 8),
                             task="text-generation", max_new_tokens=N_NEW)
    model, settings, held = wl.build_model(), wl.default_settings(1), list(wl.eval_data())
    quantized = build_plan("int8-weight-only", model, settings, wl)
    both = build_plan("int8-weight-only+self-speculative", model, settings, wl)
    # the draft view shares the quantized layers: verified output is the quantized model's greedy output
    # (weight-only: a token's logits do not depend on the others in its pass; int8-dynamic's activation
    # scales do, so after it the verify pass's logits differ slightly from one-token decoding's)
    assert torch.equal(wl.predict(both.model, held, both.settings), wl.predict(quantized.model, held, settings))
    assert both.plan[1]["config"]["exit_layer"] == both.details["exit_layer"]
