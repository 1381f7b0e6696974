"""A saved text-generation model writes text in a fresh process with the original folder gone:
``accelkit.load(path).generate(prompts, max_new_tokens=...)`` for fp32, bf16-cast, dynamic int8 and
the OpenVINO generation graph (its own files: model.xml and model.bin)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import model_folders as mf  # noqa: E402
from accelkit.errors import ConfigError  # noqa: E402
from accelkit.saving import load, save  # noqa: E402
from accelkit.variants import build_variant  # noqa: E402
from accelkit.workloads import workload_from_model  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PROMPTS = ["the module is", "return a new", "the"]


def test_saved_generation_plans_write_text_without_the_original_folder(tmp_path):
    folder = mf.llama_folder(tmp_path)
    wl = workload_from_model(folder, mf.prompts_file(tmp_path, 8), task="text-generation", max_new_tokens=5)
    model = wl.build_model()
    formats = {"default": "hf-torch", "bf16-cast": "hf-torch", "int8-dynamic": "hf-torch",
               "openvino-generate": "hf-openvino"}
    for variant, form in formats.items():
        built = build_variant(variant, wl.build_model(), wl.default_settings(), wl)
        save(built, tmp_path / variant, variant, workload=wl)
        assert json.loads((tmp_path / variant / "plan.json").read_text())["format"] == form
    # the fp32 model's own text, as a user decodes generate's output
    tok = wl.tokenizer
    enc = tok(PROMPTS, padding=True, return_tensors="pt")
    enc.pop("token_type_ids", None)  # transformers 4's generate refuses them for a Llama
    with torch.inference_mode():
        ids = model.generate(**enc, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    expected = tok.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    shutil.rmtree(folder)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO / "src")}
    code = (f"import json, accelkit\nprompts = {PROMPTS!r}\n"
            "out = {v: accelkit.load(v).generate(prompts, max_new_tokens=4) for v in ('default', 'bf16-cast', "
            "'int8-dynamic', 'openvino-generate')}\n"
            "out['single'] = accelkit.load('default').generate('the module is', max_new_tokens=4)\n"
            "out['sampled'] = {v: accelkit.load(v).generate(prompts, max_new_tokens=4, seed=2) for v in "
            "('default', 'openvino-generate')}\n"
            "print(json.dumps(out))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["default"] == expected and out["single"] == expected[0]
    assert out["openvino-generate"] == expected  # fp32 with an fp32 cache: the same greedy text
    # sampling, seeded: OpenVINO's loop draws the tokens generate draws, with no torch model left
    assert out["sampled"]["openvino-generate"] == out["sampled"]["default"] != expected
    for variant in ("bf16-cast", "int8-dynamic"):
        assert len(out[variant]) == 3 and all(isinstance(t, str) and t for t in out[variant])


def test_generate_is_only_for_text_generation_models_and_checks_its_counts(tmp_path):
    folder = mf.llama_folder(tmp_path)
    wl = workload_from_model(folder, mf.prompts_file(tmp_path, 8), task="text-generation", max_new_tokens=5)
    save(build_variant("default", wl.build_model(), wl.default_settings(), wl), tmp_path / "d", "default", workload=wl)
    shipped = load(tmp_path / "d")
    with pytest.raises(ConfigError, match="max_new_tokens=0"):
        shipped.generate("the", max_new_tokens=0)
    with pytest.raises(ConfigError, match="batch_size=0"):
        shipped.generate("the", batch_size=0)
    st = mf.sentence_transformers_folder(tmp_path)
    enc_wl = workload_from_model(st, mf.text_file(tmp_path, 8))
    save(build_variant("default", enc_wl.build_model(), enc_wl.default_settings(), enc_wl), tmp_path / "e",
         "default", workload=enc_wl)
    with pytest.raises(ConfigError, match="generate\\(\\) is for text-generation"):
        load(tmp_path / "e").generate("the")


def test_a_saved_latency_plan_writes_one_prompt_a_call_by_default(tmp_path):
    # openvino-prompt-lookup verifies drafts at batch 1 only: a folder chosen at batch 1 keeps to it
    from accelkit.techniques.openvino_runtime import OPENVINO_AVAILABLE

    if OPENVINO_AVAILABLE() is not None:
        pytest.skip(str(OPENVINO_AVAILABLE()))
    folder = mf.llama_folder(tmp_path)
    wl = workload_from_model(folder, mf.prompts_file(tmp_path, 8), task="text-generation", max_new_tokens=5)
    model = wl.build_model()
    built = build_variant("openvino-prompt-lookup", wl.build_model(), wl.default_settings(1), wl)
    save(built, tmp_path / "lookup", "openvino-prompt-lookup", workload=wl)
    shipped = load(tmp_path / "lookup")
    rows, decode = [], shipped.model.decode
    shipped.model.decode = lambda ids, *a, **k: (rows.append(ids.shape[0]), decode(ids, *a, **k))[1]
    out = shipped.generate(PROMPTS, max_new_tokens=4)
    assert rows == [1, 1, 1]
    tok = wl.tokenizer
    with torch.inference_mode():
        for prompt, text in zip(PROMPTS, out, strict=True):
            ids = tok(prompt, return_tensors="pt")["input_ids"]
            new = model.generate(input_ids=ids, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
            assert text == tok.decode(new[0, ids.shape[1]:], skip_special_tokens=True)
    rows.clear()
    shipped.generate(PROMPTS, max_new_tokens=4, batch_size=3)  # the caller's batch size still rules
    assert rows == [3]


def test_a_saved_throughput_plan_keeps_its_batch_size_and_length_sorted_batches(tmp_path):
    """dynamic-padding+prompt-batching ships the batch size it chose and length-sorted batches;
    the text comes back in the caller's order, each the model's own greedy continuation."""
    folder = mf.llama_folder(tmp_path)
    wl = workload_from_model(folder, mf.prompts_file(tmp_path, 8), task="text-generation", max_new_tokens=4)
    model = wl.build_model()
    plan = ["dynamic-padding", {"technique": "prompt-batching", "config": {"batch_size": 2}}]
    built = build_variant(plan, wl.build_model(), wl.default_settings(1), wl)
    save(built, tmp_path / "batched", "dynamic-padding+prompt-batching", workload=wl)
    shipped = load(tmp_path / "batched")
    prompts = ["the", "return a new list of the", "the module is"]
    seen: list[list[int]] = []
    generate = shipped.model.generate
    shipped.model.generate = lambda *a, **k: (seen.append(k["attention_mask"].sum(1).tolist()), generate(*a, **k))[1]
    out = shipped.generate(prompts, max_new_tokens=4)
    tok = wl.tokenizer
    lengths = [len(tok(p)["input_ids"]) for p in prompts]
    # two prompts a call, longest first: the plan's size and order
    assert seen == [sorted(lengths, reverse=True)[:2], sorted(lengths, reverse=True)[2:]]
    with torch.inference_mode():
        for prompt, text in zip(prompts, out, strict=True):
            ids = tok(prompt, return_tensors="pt")["input_ids"]
            new = model.generate(input_ids=ids, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
            assert text == tok.decode(new[0, ids.shape[1]:], skip_special_tokens=True)
    assert shipped.generate([], max_new_tokens=4) == []


def test_a_saved_model_stops_at_the_callers_eos_token(tmp_path):
    """``generate(eos_token_id=...)`` ends each prompt's text at that token, as ``generate`` does,
    on a torch plan and on the OpenVINO plan (which drops the row from its batch); an id outside
    the vocabulary is refused."""
    folder = mf.llama_folder(tmp_path)
    wl = workload_from_model(folder, mf.prompts_file(tmp_path, 8), task="text-generation", max_new_tokens=6)
    model, tok = wl.build_model(), wl.tokenizer
    enc = tok(PROMPTS, padding=True, return_tensors="pt")
    enc.pop("token_type_ids", None)
    call = dict(max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
    with torch.inference_mode():
        free = model.generate(**enc, **call, eos_token_id=None)[:, enc["input_ids"].shape[1]:]
        stop = int(free[0, 1])  # row 0 writes it second
        stopped = model.generate(**enc, **call, eos_token_id=stop)[:, enc["input_ids"].shape[1]:]
    expected = tok.batch_decode(stopped, skip_special_tokens=True)
    assert expected != tok.batch_decode(free, skip_special_tokens=True)
    for variant in ("default", "openvino-generate"):
        save(build_variant(variant, wl.build_model(), wl.default_settings(), wl), tmp_path / variant, variant,
             workload=wl)
        shipped = load(tmp_path / variant)
        assert shipped.generate(PROMPTS, max_new_tokens=6, eos_token_id=stop) == expected
        assert shipped.generate(PROMPTS, max_new_tokens=6, eos_token_id=[stop]) == expected
        with pytest.raises(ConfigError, match="eos_token_id"):
            shipped.generate(PROMPTS, max_new_tokens=6, eos_token_id=len(tok))
