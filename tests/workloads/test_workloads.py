import sys
import textwrap

import pytest
import torch

from accelkit.errors import UnknownWorkloadError, WorkloadImportError
from accelkit.workloads import RunSettings, TensorWorkload, get_workload, list_workloads
from accelkit.workloads.minilm import embedding_quality, pydoc_sentences


def test_embedded_workloads_are_listed():
    assert {"minilm", "digits", "gpt-mini"} <= set(list_workloads())


def test_unknown_workload_names_the_choices():
    with pytest.raises(UnknownWorkloadError, match="minilm"):
        get_workload("resnet")


def test_pydoc_sentences_are_deterministic_real_english():
    sents = pydoc_sentences()
    assert len(sents) >= 2000
    assert sents == pydoc_sentences.__wrapped__()
    assert all(len(s.split()) >= 5 for s in sents[:100])


def test_minilm_eval_and_calib_are_disjoint(minilm_workload):
    assert not set(minilm_workload.eval_data()) & set(minilm_workload.calib_data())


def test_dynamic_padding_keeps_embeddings_and_order(minilm_workload, minilm_model):
    data = minilm_workload.eval_data(24)
    fixed = minilm_workload.predict(minilm_model, data, RunSettings(batch_size=8))
    dyn = minilm_workload.predict(
        minilm_model, data, RunSettings(batch_size=8, padding="dynamic", sort_by_length=True)
    )
    q = minilm_workload.quality(dyn, fixed, data)
    assert q["cosine_min"] > 0.9999
    assert fixed.shape == (24, 384)


def test_embedding_quality_detects_a_shuffled_output():
    ref = torch.randn(50, 16)
    assert embedding_quality(ref, ref)["top10_agreement"] == 1.0
    q = embedding_quality(ref[torch.randperm(50)], ref)
    assert q["cosine_mean"] < 0.5


def test_digits_baseline_is_accurate(digits_workload, digits_model):
    data = digits_workload.eval_data()
    out = digits_workload.predict(digits_model, data, RunSettings(batch_size=256))
    assert digits_workload.quality(out, out, data)["accuracy"] >= 0.97


@pytest.fixture()
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_wl.py").write_text(textwrap.dedent("""
        import torch
        def good():
            torch.manual_seed(0)
            return {"model": torch.nn.Linear(4, 3), "inputs": torch.randn(10, 4), "labels": torch.zeros(10, dtype=torch.long)}
        def bad():
            return 42
        def raises():
            raise RuntimeError("boom")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_wl"
    sys.modules.pop("my_wl", None)


def test_user_workload_from_module_function(user_module):
    wl = get_workload(f"{user_module}:good")
    assert isinstance(wl, TensorWorkload)
    data = wl.eval_data()
    out = wl.predict(wl.build_model(), data, RunSettings(batch_size=4))
    assert out.shape == (10, 3)
    assert "accuracy" in wl.quality(out, out, data)


@pytest.mark.parametrize(
    "spec, match",
    [("no_such_module_xyz:f", "cannot import"), ("my_wl:missing", "no callable"), ("my_wl:bad", "returned int"), ("my_wl:raises", "boom")],
)
def test_user_workload_errors_are_one_clear_line(user_module, spec, match):
    with pytest.raises(WorkloadImportError, match=match):
        get_workload(spec)


def test_stdlib_docstring_sentences_are_prose_and_never_evaluation_sentences():
    from accelkit.workloads.minilm import pydoc_sentences, stdlib_docstring_sentences

    extra = stdlib_docstring_sentences()
    assert len(extra) > 5000  # the point is more training text than the 1,589 calibration sentences
    assert not set(extra) & set(pydoc_sentences())  # nothing held out leaks into training
    assert list(extra) == sorted(extra)  # stable order on one Python version
    assert all(len(s.split()) >= 5 and ">>>" not in s for s in extra)


def test_package_docstring_sentences_are_unseen_by_students_and_evaluation():
    from accelkit.workloads.minilm import (
        package_docstring_sentences,
        pydoc_sentences,
        stdlib_docstring_sentences,
    )

    unseen = package_docstring_sentences()
    assert len(unseen) > 5000  # enough rows to fit a router on
    # disjoint from what students train on and from every pydoc sentence (evaluation included)
    assert not set(unseen) & (set(pydoc_sentences()) | set(stdlib_docstring_sentences()))
    assert all(len(s.split()) >= 5 and ">>>" not in s for s in unseen[:2000])


def test_extra_sentences_resolve_by_name_and_refuse_unknown_names():
    from accelkit.errors import ConfigError
    from accelkit.workloads.minilm import (
        extra_sentences,
        package_docstring_sentences,
        stdlib_docstring_sentences,
    )

    assert extra_sentences(None) == ()
    assert extra_sentences("stdlib-docstrings") == stdlib_docstring_sentences()
    held_out, train = extra_sentences("package-docstrings-heldout"), extra_sentences("package-docstrings-train")
    assert held_out[:3] == package_docstring_sentences()[:3] and not set(held_out) & set(train)
    assert extra_sentences("stdlib-docstrings+package-docstrings-train") == stdlib_docstring_sentences() + train
    with pytest.raises(ConfigError, match="stdlib-docstrings"):
        extra_sentences("wikipedia")


@pytest.mark.parametrize("side", ["right", "left"])
def test_sorted_batches_tokenize_once_and_pad_exactly_as_the_tokenizer_does(side):
    from accelkit.workloads import get_workload
    from accelkit.workloads.text import pad_token_rows

    wl = get_workload("minilm")
    tok = wl.tokenizer
    texts = list(wl.eval_data(40)) + ["", "x " * 400]  # an empty line and one cut at the maximum
    enc = tok(texts, truncation=True, max_length=64)
    old_side = tok.padding_side
    tok.padding_side = side
    try:
        idx = [41, 3, 40, 7, 12]
        got = pad_token_rows(tok, enc, idx, ("input_ids", "attention_mask", "token_type_ids"))
        want = tok([texts[i] for i in idx], padding="longest", truncation=True, max_length=64, return_tensors="pt")
    finally:
        tok.padding_side = old_side
    assert set(got) == {"input_ids", "attention_mask", "token_type_ids"}
    for k, v in got.items():
        assert torch.equal(v, want[k]), k
    # and the workload's sorted batches hold every sentence once, longest first
    settings = wl.default_settings()
    batches = list(wl.batches(texts, settings))
    assert sorted(i for _, idx in batches for i in idx) == list(range(len(texts)))
    lengths = [int(b["attention_mask"].sum(1).max()) for b, _ in batches]
    assert lengths == sorted(lengths, reverse=True) and batches[0][0]["input_ids"].shape[1] == 256


def test_minilm_is_the_general_text_workload_on_its_bundled_folder(minilm_workload):
    from accelkit.workloads.hf_model import HFTextWorkload
    from accelkit.workloads.minilm import minilm_path

    assert isinstance(minilm_workload, HFTextWorkload) and minilm_workload.task == "sentence-embedding"
    assert minilm_workload.sentence_folder() == minilm_path() and minilm_workload.model_max_length == 256
    assert {"block-stack", "encoder-blocks", "sentence-embedding", "unlabelled-text"} <= minilm_workload.offers()
    assert minilm_workload.ship_spec()["pipeline"]["pooling"] == "mean"


def test_a_text_workload_refuses_an_image_task_and_a_folderless_one_its_missing_parts():
    from accelkit.errors import ConfigError
    from accelkit.workloads.hf_model import HFTextWorkload, LabelledTexts

    texts = LabelledTexts.of(["a b c d e"], None)
    with pytest.raises(ConfigError, match="a text model takes one of .*causal-lm"):
        HFTextWorkload("m", lambda: None, object(), "image-classification", texts, texts, max_length=8)
    with pytest.raises(ConfigError, match="pass the model and tokenizer"):
        HFTextWorkload("m", None, None, "causal-lm", texts, texts, max_length=8)
