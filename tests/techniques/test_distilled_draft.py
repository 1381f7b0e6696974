"""speculative-distilled: a draft distilled from the model's first layers on calibration prompts
proposes, the model verifies, so greedy output is exactly the model's own (tiny random Llama, two
training steps); the trained draft is cached by fingerprint and loaded on the next build; bad
configs and models too shallow to cut are refused in one line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from accelkit.errors import ConfigError
from accelkit.techniques.distilled_draft import CACHE_FOLDER, DistilledDraftConfig
from accelkit.techniques.registry import build_plan
from accelkit.workloads import workload_from_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import model_folders as mf  # noqa: E402

N_NEW = 8
STEP = {"technique": "speculative-distilled", "config": {"layers": 1, "prompts": 4, "max_steps": 2, "batch_size": 2}}


@pytest.fixture()
def llama(tmp_path, monkeypatch):
    monkeypatch.setenv("ACCELKIT_CACHE", str(tmp_path / "cache"))
    return workload_from_model(mf.llama_folder(tmp_path, layers=3), mf.prompts_file(tmp_path, 8),
                               task="text-generation", max_new_tokens=N_NEW)


def test_output_is_the_models_own_greedy_and_the_draft_is_cached(llama, tmp_path):
    model = llama.build_model()
    settings = llama.default_settings(1)
    held = list(llama.eval_data())
    ref = llama.predict(model, held, settings)
    built = build_plan([STEP], model, settings, llama)
    d = built.details
    assert d["train_steps"] == 2 and d["draft_layers"] == 1 and d["cached"] is False and d["batch_size"] == 1
    assert 0.0 <= d["acceptance_after"] <= 1.0 and 1 <= d["draft_tokens"] <= 8 and 0 < d["draft_cost"] <= 1
    # 4 prompts in batches of 2: one batch trains, one is held out to score acceptance (and pick the weights)
    assert d["held_out_prompts"] == 2 and d["best_step"] in (0, 1, 2)
    assert d["acceptance_after"] >= d["acceptance_before"] and d["draft_call_overhead"] >= 0
    assert torch.equal(llama.predict(built.model, held, built.settings), ref)
    # the draft is its own module, not the model's layers
    draft = built.model.draft
    assert draft.config.num_hidden_layers == 1 and model.config.num_hidden_layers == 3
    assert draft.get_input_embeddings().weight.data_ptr() != built.model.model.get_input_embeddings().weight.data_ptr()
    files = list((tmp_path / "cache" / CACHE_FOLDER).glob("*.pt"))
    assert [f.name for f in files] == [d["cache_file"]]
    again = build_plan([STEP], model, settings, llama)
    assert again.details["cached"] is True and again.details["acceptance_after"] == d["acceptance_after"]
    assert torch.equal(again.model.draft.lm_head.weight, draft.lm_head.weight)
    assert torch.equal(llama.predict(again.model, held, again.settings), ref)
    # another training budget is another draft
    other = build_plan([{**STEP, "config": {**STEP["config"], "max_steps": 3}}], model, settings, llama)
    assert other.details["cached"] is False and other.details["cache_file"] != d["cache_file"]


def test_an_unreadable_cache_file_is_trained_again(llama, tmp_path):
    model = llama.build_model()
    built = build_plan([STEP], model, llama.default_settings(1), llama)
    path = tmp_path / "cache" / CACHE_FOLDER / built.details["cache_file"]
    path.write_bytes(b"not a checkpoint")
    again = build_plan([STEP], model, llama.default_settings(1), llama)
    assert again.details["cached"] is False and path.stat().st_size > 100


def test_bad_configs_and_shallow_models_are_refused(tmp_path, monkeypatch):
    for bad in ({"layers": 0}, {"max_steps": 0}, {"max_seconds": -1}, {"lr": 0}, {"kl_weight": -1.0},
                {"draft_tokens": 0}, {"prompts": True}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            DistilledDraftConfig(**bad)
    monkeypatch.setenv("ACCELKIT_CACHE", str(tmp_path / "cache"))
    wl = workload_from_model(mf.llama_folder(tmp_path, layers=1), mf.prompts_file(tmp_path, 8),
                             task="text-generation", max_new_tokens=3)
    with pytest.raises(ConfigError, match="at least 2 decoder layers; this one has 1"):
        build_plan([STEP], wl.build_model(), wl.default_settings(1), wl)
