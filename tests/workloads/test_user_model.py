"""--model / --data: a user's Hugging Face or sentence-transformers folder on their own data."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import model_folders as mf  # noqa: E402
from accelkit.bench import bench  # noqa: E402
from accelkit.errors import ConfigError, DataFileError, ModelFolderError  # noqa: E402
from accelkit.workloads import workload_from_model  # noqa: E402


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def st_folder(root):
    return mf.sentence_transformers_folder(root)


@pytest.fixture(scope="module")
def sentences_file(root):
    return mf.text_file(root, 120)


def test_sentence_transformers_folder_runs_as_encode_does(st_folder, sentences_file):
    wl = workload_from_model(st_folder, sentences_file)
    assert wl.task == "sentence-embedding" and wl.model_max_length == 48  # sentence_bert_config.json
    settings = wl.default_settings()
    # SentenceTransformer.encode: length-sorted, padded per batch, its own max_seq_length
    assert settings.padding == "dynamic" and settings.sort_by_length and settings.max_length == 48
    assert "padded-batches" not in wl.offers()  # nothing left for dynamic-padding to trim
    assert wl.split_report == {"n_total": 120, "n_calib": 60, "n_heldout": 60, "n_unused": 0, "seed": 0}
    assert not set(wl.eval_data()) & set(wl.calib_data())  # never tuned on what is scored
    # the embedding is the folder's mean pooling, independent of batching
    model = wl.build_model()
    data = wl.eval_data(8)
    sorted_out = wl.predict(model, data, settings)
    fixed_out = wl.predict(model, data, settings.with_(padding="fixed", sort_by_length=False))
    assert torch.allclose(sorted_out, fixed_out, atol=1e-5)


def test_plain_hf_folder_default_pads_in_data_order_and_offers_dynamic_padding(root):
    folder, data = mf.bert_classifier_folder(root), mf.labelled_csv(root, 60)
    wl = workload_from_model(folder, data, text_column="body", label_column="sentiment")
    assert wl.task == "text-classification" and wl.primary_metric == "agreement"
    s = wl.default_settings()
    assert s.padding == "dynamic" and not s.sort_by_length and s.max_length == 64
    assert "padded-batches" in wl.offers()
    res = bench(wl, ["dynamic-padding"], repeats=1, warmup=0, roofline=False, memory=False)
    base, dyn = res.variant("default"), res.variant("dynamic-padding")
    assert res.baseline == "default"
    assert base.quality["agreement"] == 1.0 and "accuracy" in base.quality  # labels mapped by id2label
    assert dyn.error is None and dyn.quality["agreement"] == 1.0


def test_truncation_happens_only_at_the_model_maximum_and_is_counted(st_folder, root):
    long = " ".join(["the quick brown fox jumps over the lazy dog"] * 12)
    path = root / "long.txt"
    path.write_text("\n".join([long] * 10 + mf.sentences(30)) + "\n", encoding="utf-8")
    wl = workload_from_model(st_folder, path, calib_size=20)
    res = bench(wl, ["fixed-length"], repeats=1, warmup=0, roofline=False, memory=False, flops=False)
    data = res.settings["data"]
    held = wl.eval_data()
    assert data["max_length"] == 48 and data["items"] == len(held) == 20
    assert data["truncated"] == sum(s == long for s in held) > 0
    from accelkit.report.results import result_notes

    assert any("truncated there" in n and f"{data['truncated']} longer" in n for n in result_notes(res))


def test_causal_lm_scores_next_tokens_and_perplexity(root):
    folder, data = mf.gpt2_folder(root), mf.text_file(root, 40)
    wl = workload_from_model(folder, data)
    assert wl.task == "causal-lm" and wl.tokenizer.pad_token is not None
    res = bench(wl, ["bf16-cast"], repeats=1, warmup=0, roofline=False, memory=False, flops=False)
    base, cast = res.variant("default"), res.variant("bf16-cast")
    assert base.quality["next_token_agreement"] == 1.0 and base.quality["perplexity_change"] == 0.0
    assert base.quality["perplexity"] > 1.0
    assert cast.error is None and 0.9 <= cast.quality["next_token_agreement"] <= 1.0
    assert abs(cast.quality["perplexity_change"]) < 0.05


def test_image_classifier_folder_scores_top1_agreement(root):
    folder, images = mf.cnn_folder(root), mf.image_folder(root, 6)
    wl = workload_from_model(folder, images)
    assert wl.task == "image-classification" and wl.primary_metric == "top1_agreement"
    res = bench(wl, ["int8-dynamic"], repeats=1, warmup=0, roofline=False, memory=False, flops=False)
    base = res.variant("default")
    assert base.quality["top1_agreement"] == 1.0 and "accuracy" in base.quality  # class folders = labels


def test_module_function_model_with_a_model_output(tmp_path, monkeypatch):
    """The issue's traceback: a module returning a Hugging Face ModelOutput now just runs."""
    import numpy as np

    (tmp_path / "usermod.py").write_text(
        "import torch\n"
        "from transformers.modeling_outputs import SequenceClassifierOutput\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); torch.manual_seed(0); self.fc = torch.nn.Linear(8, 3)\n"
        "    def forward(self, x):\n"
        "        return SequenceClassifierOutput(logits=self.fc(x))\n"
        "def make():\n"
        "    return Net()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((64, 8)).astype("float32"))
    wl = workload_from_model("usermod:make", tmp_path / "x.npy")
    res = bench(wl, ["int8-dynamic"], repeats=1, warmup=0, roofline=False, memory=False, flops=False)
    assert res.variant("int8-dynamic").error is None
    assert res.variant("int8-dynamic").quality["cosine_mean"] > 0.99


@pytest.mark.parametrize("make, match", [
    (lambda r: r / "nowhere", "no such folder"),
    (lambda r: (r / "empty").mkdir() or r / "empty", "no config.json"),
])
def test_bad_model_folders_get_one_line(root, sentences_file, make, match):
    with pytest.raises(ModelFolderError, match=match):
        workload_from_model(make(root), sentences_file)


def test_bad_model_inputs_get_specific_errors(root, st_folder, sentences_file):
    weightless = root / "weightless"
    weightless.mkdir()
    (weightless / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelFolderError, match="no weights"):
        workload_from_model(weightless, sentences_file)
    alien = root / "alien"
    alien.mkdir()
    (alien / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    (alien / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelFolderError, match="does not know the architecture 'no-such-architecture'"):
        workload_from_model(alien, sentences_file)
    with pytest.raises(ConfigError, match="--task"):
        workload_from_model(st_folder, sentences_file, task="translation")
    images = mf.image_folder(root / "img", 2)
    with pytest.raises(ConfigError, match="needs text"):
        workload_from_model(st_folder, images)
    empty = root / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(DataFileError, match="no items"):
        workload_from_model(st_folder, empty)


def test_labels_that_are_not_the_model_classes_are_refused(root):
    folder = mf.bert_classifier_folder(root)
    bad = root / "bad-labels.csv"
    bad.write_text("body,sentiment\n" + "\n".join(f"{s.replace(',', ' ')},angry" for s in mf.sentences(10)) + "\n")
    with pytest.raises(DataFileError, match="not one of the model's 3 classes"):
        workload_from_model(folder, bad, text_column="body", label_column="sentiment")
