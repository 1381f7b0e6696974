"""token-classification lands as one task module: a tiny BERT token classifier (built from a
config, never downloaded) runs through the user-model workload, bench and the shipped folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import model_folders as mf  # noqa: E402
from accelkit.bench import bench  # noqa: E402
from accelkit.tasks import get_task  # noqa: E402
from accelkit.workloads import RunSettings, workload_from_model  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    from transformers import BertForTokenClassification

    root = tmp_path_factory.mktemp("token-cls")
    folder = root / "tiny-ner"
    tok = mf._tokenizer(folder, 64)
    torch.manual_seed(4)
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    cfg = mf._bert_config(num_labels=len(labels), id2label=dict(enumerate(labels)),
                          label2id={n: i for i, n in enumerate(labels)})
    BertForTokenClassification(cfg).eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def workload(folder):
    return workload_from_model(folder, mf.text_file(folder.parent, 60), task="token-classification")


def test_the_task_is_inferred_from_the_architecture(folder):
    wl = workload_from_model(folder, mf.text_file(folder.parent, 20))
    assert wl.task == "token-classification" and wl.primary_metric == "token_agreement"


def test_per_token_labels_do_not_depend_on_padding(workload):
    model, data = workload.build_model(), workload.eval_data(12)
    base = workload.predict(model, data, workload.default_settings(batch_size=5))
    assert base.shape == (12, workload.model_max_length)
    lengths = workload.token_lengths(data)
    assert [int((row >= 0).sum()) for row in base] == [min(n, workload.model_max_length) for n in lengths]
    fixed = workload.predict(model, data, RunSettings(batch_size=4, padding="fixed", max_length=64))
    assert torch.equal(base, fixed)


def test_kept_tokens_come_first_whatever_the_padding_side():
    spec = get_task("token-classification")
    logits = torch.nn.functional.one_hot(torch.tensor([[0, 0, 2, 1], [3, 1, 0, 0]]), 4).float()
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 0, 0]])  # left-padded, right-padded
    out = spec.reduce(logits, {"attention_mask": mask}, width=5)
    assert out.tolist() == [[2, 1, -1, -1, -1], [3, 1, -1, -1, -1]]


def test_agreement_counts_only_real_tokens():
    spec = get_task("token-classification")
    ref = torch.tensor([[1.0, 2.0, -1.0, -1.0], [0.0, -1.0, -1.0, -1.0]])
    out = torch.tensor([[1.0, 3.0, -1.0, -1.0], [0.0, -1.0, -1.0, -1.0]])
    assert spec.quality(ref, ref) == {"token_agreement": 1.0}
    assert spec.quality(out, ref)["token_agreement"] == pytest.approx(2 / 3)


def test_bench_measures_a_cast_against_the_default_run(workload):
    res = bench(workload, ["bf16-cast"], repeats=1, warmup=0, roofline=False, memory=False, flops=False)
    base, cast = res.variant("default"), res.variant("bf16-cast")
    assert res.primary_metric == "token_agreement"
    assert base.quality["token_agreement"] == 1.0
    assert cast.error is None and 0.9 <= cast.quality["token_agreement"] <= 1.0


def test_a_saved_plan_loads_and_gives_the_measured_logits(workload, tmp_path):
    from accelkit.saving import load, save
    from accelkit.variants import build_variant

    built = build_variant("int8-dynamic", workload.build_model(), workload.default_settings(), workload)
    loaded = load(save(built, tmp_path / "model", workload=workload))
    assert loaded.task == "token-classification"
    inputs = loaded.tokenizer(list(workload.eval_data(4)), padding=True, return_tensors="pt")
    inputs = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask")}
    with torch.inference_mode():
        want = built.model(**inputs).logits
    assert torch.allclose(loaded(**inputs).logits, want, atol=1e-5)
