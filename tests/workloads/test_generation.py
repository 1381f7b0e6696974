"""--task text-generation on tiny random-weight Llama and GPT-2 folders: prompts split like any
user data, greedy ``generate`` as the default run, the techniques that apply to it, speculative
decoding with a draft that writes exactly the model's greedy output, and bad input refused."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from accelkit.errors import ConfigError, DataFileError, ModelFolderError
from accelkit.workloads import workload_from_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import model_folders as mf  # noqa: E402

N_NEW = 6


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    return {"llama": mf.llama_folder(root), "draft": mf.llama_folder(root, "tiny-draft", layers=1, hidden=32, seed=6),
            "gpt2": mf.gpt2_generation_folder(root), "prompts": mf.prompts_file(root, 16), "root": root}


@pytest.fixture(scope="module")
def llama(folders):
    return workload_from_model(folders["llama"], folders["prompts"], task="text-generation", max_new_tokens=N_NEW,
                               draft=folders["draft"])


def test_prompts_split_and_items_are_the_new_tokens(llama):
    held = llama.eval_data()
    assert len(held) == 8 and len(llama.calib_data()) == 8
    assert llama.n_items(held) == 8 * N_NEW and llama.item_unit == "tokens"
    assert {"generate", "draft-model", "text"} <= llama.offers()
    report = llama.data_report(held, llama.default_settings())
    assert report["pad_set_to_eos"] is True and report["pad_token"] == "</s>" and report["split"]["n_heldout"] == 8


def test_the_default_run_is_the_users_greedy_generate(llama):
    model = llama.build_model()
    held = list(llama.eval_data())
    out = llama.predict(model, held, llama.default_settings())
    assert out.shape == (len(held), N_NEW) and (out >= 0).all()
    # what the user writes: left-padded batch, greedy, generate
    tok = llama.tokenizer
    enc = tok(held[:3], padding=True, return_tensors="pt")
    assert tok.padding_side == "left"
    with torch.inference_mode():
        ids = model.generate(**enc, max_new_tokens=N_NEW, do_sample=False, eos_token_id=None,
                             pad_token_id=tok.pad_token_id)
    assert torch.equal(out[:3].long(), ids[:, enc["input_ids"].shape[1]:])


def test_techniques_apply_and_speculative_output_is_the_models_own(llama):
    from accelkit.bench import bench
    from accelkit.variants import list_variants

    names = ["bf16", "bf16-cast", "int8-dynamic", "int8-weight-only", "speculative"]
    assert set(names) <= set(list_variants(llama))
    res = bench(llama, names, repeats=1, warmup=0, roofline=False, memory=False, flops=False)
    by = {v.name: v for v in res.variants}
    assert all(by[n].error is None for n in names), {n: by[n].error for n in names}
    assert by["speculative"].quality["greedy_agreement"] == 1.0
    assert by["speculative"].quality["identical_outputs"] == 1.0
    assert res.settings["items"] == 8 * N_NEW and by["default"].throughput_unit == "tokens/s"
    for name in ("default", "speculative"):
        first = by[name].details["time_to_first_token_ms"]
        assert 0 < first["p50"] <= first["p95"]
    # timed beside default's on the same batches: default's own pairs are 1 exactly
    assert by["default"].details["time_to_first_token_ms"]["vs_default"] == 1.0
    assert by["bf16"].details["time_to_first_token_ms"]["vs_default"] > 0
    for name in ("bf16-cast", "int8-dynamic"):
        assert 0.0 <= by[name].quality["greedy_agreement"] <= 1.0
    # perplexity on the held-out text beside agreement: the draft leaves the model's logits alone
    assert by["default"].details["perplexity"] > 1.0 and by["default"].details["perplexity_change"] == 0.0
    assert by["speculative"].details["perplexity_change"] == 0.0
    assert abs(by["bf16-cast"].details["perplexity_change"]) < 0.5


def test_perplexity_is_the_models_own_loss_and_ignores_left_padding(llama):
    model = llama.build_model()
    held = list(llama.eval_data())
    tok = llama.tokenizer
    settings = llama.default_settings(1)
    with torch.inference_mode():
        losses = [(model(**(enc := tok(p, return_tensors="pt")), labels=enc["input_ids"]).loss,
                   enc["input_ids"].shape[1] - 1) for p in held[:3]]
    expected = float(torch.exp(sum(loss * n for loss, n in losses) / sum(n for _, n in losses)))
    assert llama.perplexity(model, held[:3], settings) == pytest.approx(expected, rel=1e-4)
    # batched with left padding: the same figure
    assert llama.perplexity(model, held[:3], llama.default_settings(3)) == pytest.approx(expected, rel=1e-4)


def test_speculative_needs_a_draft(folders):
    from accelkit.variants import list_variants

    wl = workload_from_model(folders["llama"], folders["prompts"], task="text-generation", max_new_tokens=N_NEW)
    assert "draft-model" not in wl.offers() and "speculative" not in list_variants(wl)


def test_gpt2_generates_in_fp32_and_bf16_cast(folders):
    from accelkit.bench import bench

    wl = workload_from_model(folders["gpt2"], folders["prompts"], task="text-generation", max_new_tokens=4)
    res = bench(wl, ["bf16-cast"], repeats=1, warmup=0, roofline=False, memory=False, flops=False)
    assert [v.error for v in res.variants] == [None, None]


def test_jsonl_prompts_are_read_from_the_prompt_key(folders, tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps({"id": f"n{i}", "prompt": f"the module {i}"}) for i in range(6)))
    wl = workload_from_model(folders["llama"], path, task="text-generation", max_new_tokens=2)
    assert all(p.startswith("the module") for p in wl.eval_data())


def test_bad_input_is_one_line(folders, tmp_path):
    llama, prompts = folders["llama"], folders["prompts"]
    with pytest.raises(ConfigError, match="--max-new-tokens 0"):
        workload_from_model(llama, prompts, task="text-generation", max_new_tokens=0)
    with pytest.raises(ConfigError, match="pass at most 127"):
        workload_from_model(llama, prompts, task="text-generation", max_new_tokens=500)
    with pytest.raises(ConfigError, match="go with --task text-generation"):
        workload_from_model(llama, prompts, task="causal-lm", max_new_tokens=4)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(DataFileError, match="has no items"):
        workload_from_model(llama, empty, task="text-generation")
    with pytest.raises(ModelFolderError, match="not a causal language model"):
        workload_from_model(mf.bert_classifier_folder(tmp_path), prompts, task="text-generation")
    with pytest.raises(ConfigError, match="tokenizer differs"):
        workload_from_model(llama, prompts, task="text-generation", draft=mf.gpt2_folder(tmp_path))


def test_a_module_function_that_generates_is_a_generation_workload(folders, tmp_path, monkeypatch):
    (tmp_path / "my_lm.py").write_text(
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f"FOLDER = {str(folders['llama'])!r}\n"
        "def make():\n"
        "    return {'model': AutoModelForCausalLM.from_pretrained(FOLDER), 'tokenizer': "
        "AutoTokenizer.from_pretrained(FOLDER), 'task': 'text-generation'}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    wl = workload_from_model("my_lm:make", folders["prompts"], max_new_tokens=3)
    held = list(wl.eval_data(2))
    out = wl.predict(wl.build_model(), held, wl.default_settings())
    assert out.shape == (2, 3) and "generate" in wl.offers() and wl.ship_spec() is None


def test_sampling_with_a_seed_repeats_and_is_generates_own(folders):
    wl = workload_from_model(folders["llama"], folders["prompts"], task="text-generation", max_new_tokens=N_NEW,
                             sample_seed=3)
    model = wl.build_model()
    held = list(wl.eval_data())
    settings = wl.default_settings(4)
    first, again = (wl.predict(model, held, settings) for _ in range(2))
    assert torch.equal(first, again) and wl.data_report(held, settings)["decoding"] == "sampling, seed 3"
    tok = wl.tokenizer
    enc = tok(held[:4], padding=True, return_tensors="pt")
    torch.manual_seed(3)
    with torch.inference_mode():
        ids = model.generate(**enc, max_new_tokens=N_NEW, do_sample=True, eos_token_id=None,
                             pad_token_id=tok.pad_token_id)
    assert torch.equal(first[:4].long(), ids[:, enc["input_ids"].shape[1]:])
    greedy = workload_from_model(folders["llama"], folders["prompts"], task="text-generation", max_new_tokens=N_NEW)
    assert not torch.equal(first, greedy.predict(model, held, settings))


def test_sampling_options_are_checked(folders):
    from accelkit.commands import model_options

    with pytest.raises(ConfigError, match="--do-sample go with --task text-generation"):
        workload_from_model(folders["llama"], folders["prompts"], task="causal-lm", sample_seed=1)
    with pytest.raises(ConfigError, match="--seed 5 seeds sampling; add --do-sample"):
        model_options("m", None, None, None, None, None, None, seed=5)
    with pytest.raises(ConfigError, match="--seed -1"):
        workload_from_model(folders["llama"], folders["prompts"], task="text-generation", sample_seed=-1)
    found = model_options("m", Path("p.txt"), "text-generation", None, None, None, None, do_sample=True)
    assert found["sample_seed"] == 0
