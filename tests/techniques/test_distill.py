"""Distillation: loss properties, layer-dropping students, students that learn to match their teacher."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from accelkit.errors import ConfigError
from accelkit.techniques.distill import (
    ClassifierDistillConfig,
    HiddenDistillConfig,
    HiddenDistillLoss,
    LogitKDConfig,
    SentenceDistillConfig,
    cached_sentence_student,
    distill_classifier,
    distill_sentence_encoder,
    logit_kd_loss,
    make_layer_student,
    sentence_embeddings,
)
from accelkit.workloads.digits import DigitsCNN


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # tiny models gain nothing from a second thread, and on a shared CI box idle-spinning
    # OpenMP workers make them many times slower
    from accelkit.measure import thread_count

    with thread_count(1):
        yield


GEN = torch.Generator().manual_seed(0)
LOGITS = torch.randn(8, 10, generator=GEN)
LABELS = torch.randint(0, 10, (8,), generator=GEN)


# ---------------------------------------------------------------- logit KD


def test_kd_loss_is_zero_when_student_equals_teacher():
    assert logit_kd_loss(LOGITS, LOGITS.clone(), config=LogitKDConfig(alpha=1.0)).item() == pytest.approx(0, abs=1e-6)


def test_kd_loss_is_positive_for_a_different_student_and_pure_ce_at_alpha_zero():
    other = torch.randn(8, 10, generator=GEN)
    assert logit_kd_loss(other, LOGITS, config=LogitKDConfig(alpha=1.0)).item() > 0.01
    ce = nn.functional.cross_entropy(other, LABELS)
    assert logit_kd_loss(other, LOGITS, LABELS, LogitKDConfig(alpha=0.0)).item() == pytest.approx(ce.item())


def test_kd_loss_mixes_soft_and_hard_by_alpha_and_scales_by_t_squared():
    other = torch.randn(8, 10, generator=GEN)
    soft = logit_kd_loss(other, LOGITS, config=LogitKDConfig(temperature=3.0, alpha=1.0))
    hard = nn.functional.cross_entropy(other, LABELS)
    mixed = logit_kd_loss(other, LOGITS, LABELS, LogitKDConfig(temperature=3.0, alpha=0.25))
    assert mixed.item() == pytest.approx(0.25 * soft.item() + 0.75 * hard.item(), rel=1e-5)
    kl = nn.functional.kl_div(
        nn.functional.log_softmax(other / 3, -1), nn.functional.softmax(LOGITS / 3, -1), reduction="batchmean"
    )
    assert soft.item() == pytest.approx(9 * kl.item(), rel=1e-5)


def test_kd_loss_gradient_flows_to_student_only():
    student = LOGITS.clone().add_(0.5).requires_grad_()
    teacher = LOGITS.clone().requires_grad_()
    logit_kd_loss(student, teacher, config=LogitKDConfig(alpha=1.0)).backward()
    assert student.grad.abs().sum() > 0 and teacher.grad is None


def test_kd_bad_inputs_are_config_errors():
    with pytest.raises(ConfigError, match="differ in shape"):
        logit_kd_loss(torch.randn(8, 5), LOGITS)
    with pytest.raises(ConfigError, match="pass targets"):
        logit_kd_loss(LOGITS, LOGITS, config=LogitKDConfig(alpha=0.5))
    with pytest.raises(ConfigError, match="temperature"):
        LogitKDConfig(temperature=0)
    with pytest.raises(ConfigError, match="alpha"):
        LogitKDConfig(alpha=1.5)
    assert LogitKDConfig.from_dict(LogitKDConfig(2.0, 0.3).to_dict()) == LogitKDConfig(2.0, 0.3)


# ---------------------------------------------------------------- hidden-state KD


@pytest.mark.parametrize("kind", ["mse", "cosine"])
def test_hidden_loss_zero_for_identical_states_of_equal_width(kind):
    h = torch.randn(4, 7, 16, generator=GEN)
    loss = HiddenDistillLoss(16, 16, HiddenDistillConfig(kind))
    assert isinstance(loss.projection, nn.Identity)
    assert loss(h, h.clone()).item() == pytest.approx(0, abs=1e-6)


def test_hidden_loss_learns_a_projection_when_widths_differ():
    torch.manual_seed(0)
    teacher = torch.randn(64, 32, generator=GEN)
    student = teacher @ torch.randn(32, 12, generator=GEN)  # a 12-wide view of the teacher's states
    loss = HiddenDistillLoss(12, 32, HiddenDistillConfig("mse"))
    assert loss.projection.weight.shape == (32, 12)
    opt = torch.optim.Adam(loss.parameters(), lr=0.05)
    before = loss(student, teacher).item()
    for _ in range(60):
        opt.zero_grad()
        value = loss(student, teacher)
        value.backward()
        opt.step()
    assert value.item() < 0.5 * before


def test_hidden_loss_names_mismatched_shapes():
    loss = HiddenDistillLoss(12, 32)
    with pytest.raises(ConfigError, match="widths"):
        loss(torch.randn(4, 10), torch.randn(4, 32))
    with pytest.raises(ConfigError, match=r"\(4, 12\) and teacher states \(5, 32\)"):
        loss(torch.randn(4, 12), torch.randn(5, 32))
    with pytest.raises(ConfigError, match="loss"):
        HiddenDistillConfig("l1")


# ---------------------------------------------------------------- classifiers


def test_classifier_student_agrees_more_with_teacher_after_distillation():
    torch.manual_seed(0)
    teacher = DigitsCNN(width=8).eval()
    student = DigitsCNN(width=4).eval()
    x = torch.rand(256, 1, 8, 8, generator=GEN)
    y = teacher(x).argmax(-1).detach()

    def agreement() -> float:
        with torch.no_grad():
            return float((student(x).argmax(-1) == y).float().mean())

    before = agreement()
    distill_classifier(student, teacher, x, y, ClassifierDistillConfig(LogitKDConfig(2.0, 1.0), epochs=10, lr=1e-2))
    assert agreement() > before + 0.2


def test_classifier_distill_refuses_mismatched_heads():
    with pytest.raises(ConfigError, match="number of classes"):
        distill_classifier(nn.Sequential(nn.Flatten(), nn.Linear(64, 5)), DigitsCNN(width=4).eval(),
                           torch.rand(8, 1, 8, 8), torch.zeros(8, dtype=torch.long))
    with pytest.raises(ConfigError, match="epochs"):
        ClassifierDistillConfig(epochs=0)


# ---------------------------------------------------------------- sentence encoders (a tiny BERT)


@pytest.fixture(scope="module")
def tiny_bert():
    from transformers import BertConfig, BertModel

    from accelkit.workloads import get_workload

    tokenizer = get_workload("minilm").tokenizer
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    return BertModel(cfg, add_pooling_layer=False).eval(), tokenizer


SENTENCES = [f"The {w} function returns a {v} value for every item in the list number {i}."
             for i, (w, v) in enumerate([("len", "new"), ("map", "lazy"), ("sorted", "fresh"), ("zip", "tuple")] * 8)]


def test_layer_student_keeps_the_chosen_teacher_layers(tiny_bert):
    teacher, _ = tiny_bert
    student = make_layer_student(teacher, (0, 3))
    assert len(student.encoder.layer) == 2 and student.config.num_hidden_layers == 2
    assert len(teacher.encoder.layer) == 4  # teacher untouched
    for s_layer, t_idx in zip(student.encoder.layer, (0, 3), strict=True):
        for (k, a), (_, b) in zip(s_layer.state_dict().items(), teacher.encoder.layer[t_idx].state_dict().items(), strict=True):
            assert torch.equal(a, b), k
    assert student.accelkit_details["kept_layers"] == [0, 3]


def test_layer_subsets_are_ranked_by_untrained_cosine(tiny_bert):
    from accelkit.techniques.distill import rank_layer_subsets

    teacher, tokenizer = tiny_bert
    ranked = rank_layer_subsets(teacher, tokenizer, SENTENCES[:8], k=2)
    assert len(ranked) == 6 and sorted(keep for keep, _ in ranked) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    scores = [score for _, score in ranked]
    assert scores == sorted(scores, reverse=True)
    with pytest.raises(ConfigError, match="choose 1..4"):
        rank_layer_subsets(teacher, tokenizer, SENTENCES[:8], k=5)


def test_layer_student_bad_layers_are_config_errors(tiny_bert):
    teacher, _ = tiny_bert
    with pytest.raises(ConfigError, match="0..3"):
        make_layer_student(teacher, (0, 4))
    with pytest.raises(ConfigError, match="encoder.layer"):
        make_layer_student(nn.Linear(2, 2), (0,))
    with pytest.raises(ConfigError, match="increasing"):
        SentenceDistillConfig(keep_layers=(2, 1))


def test_sentence_student_matches_teacher_better_after_short_training(tiny_bert):
    teacher, tokenizer = tiny_bert
    target = sentence_embeddings(teacher, tokenizer, SENTENCES)
    student = make_layer_student(teacher, (0,))
    with torch.no_grad():  # start visibly off the teacher: a random tiny BERT's layers barely move embeddings
        gen = torch.Generator().manual_seed(1)
        for p in student.encoder.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.3)

    def cosine() -> float:
        emb = sentence_embeddings(student, tokenizer, SENTENCES)
        return float(nn.functional.cosine_similarity(emb, target).mean())

    before = cosine()
    distill_sentence_encoder(student, target, tokenizer, SENTENCES,
                             SentenceDistillConfig(keep_layers=(0,), epochs=6, lr=2e-3, batch_size=8))
    after = cosine()
    assert after > before and (1 - after) < 0.7 * (1 - before)


def test_sentence_student_is_cached_by_config(tiny_bert, tmp_path, monkeypatch):
    teacher, tokenizer = tiny_bert
    monkeypatch.setenv("ACCELKIT_CACHE", str(tmp_path))

    class FakeWorkload:
        name = "tiny"

        def __init__(self):
            self.tokenizer = tokenizer

        def calib_data(self, limit=None):
            return SENTENCES[:limit]

    cfg = SentenceDistillConfig(keep_layers=(1, 2), epochs=1, batch_size=16, train_sentences=16)
    first = cached_sentence_student(FakeWorkload(), teacher, cfg)
    second = cached_sentence_student(FakeWorkload(), teacher, cfg)
    assert first.accelkit_details["cached"] is False and second.accelkit_details["cached"] is True
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert len(list((tmp_path / "distill").glob("tiny-student-*.safetensors"))) == 1
    with pytest.raises(ConfigError, match="sentences but teacher embeddings"):
        distill_sentence_encoder(first, torch.zeros(3, 32), tokenizer, SENTENCES, cfg)
    # init_from continues from the cached student: zero further epochs give exactly its weights
    more = SentenceDistillConfig(keep_layers=(1, 2), epochs=0, batch_size=16, train_sentences=16, init_from=cfg.to_dict())
    continued = cached_sentence_student(FakeWorkload(), teacher, more)
    for a, b in zip(first.state_dict().values(), continued.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    fresh = make_layer_student(teacher, (1, 2))
    assert not all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), continued.state_dict().values(),
                                                      strict=True))


def test_augmented_sentences_are_crops_or_pairs_of_the_training_sentences():
    from accelkit.techniques.distill import augment_sentences

    out = augment_sentences(SENTENCES[:8], copies=2, seed=0)
    assert len(out) == 24 and out[:8] == SENTENCES[:8]
    for crop, source in zip(out[8:16], SENTENCES[:8], strict=True):
        assert crop in source and len(crop.split()) < len(source.split())
    for pair, source in zip(out[16:], SENTENCES[:8], strict=True):
        assert pair.startswith(source + " ") and pair[len(source) + 1 :] in SENTENCES[:8]
    assert augment_sentences(SENTENCES[:8], 2, seed=0) == out  # deterministic


def test_token_matching_needs_the_teacher(tiny_bert):
    teacher, tokenizer = tiny_bert
    target = torch.zeros(len(SENTENCES), 32)
    with pytest.raises(ConfigError, match="pass teacher="):
        distill_sentence_encoder(make_layer_student(teacher, (0,)), target, tokenizer, SENTENCES,
                                 SentenceDistillConfig(keep_layers=(0,), token_weight=1.0))


def test_token_matching_trains_with_the_teacher(tiny_bert):
    teacher, tokenizer = tiny_bert
    target = sentence_embeddings(teacher, tokenizer, SENTENCES[:8])
    student = make_layer_student(teacher, (0,))
    distill_sentence_encoder(student, target, tokenizer, SENTENCES[:8],
                             SentenceDistillConfig(keep_layers=(0,), epochs=1, token_weight=1.0), teacher=teacher)
    assert torch.isfinite(sentence_embeddings(student, tokenizer, SENTENCES[:8])).all()


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["distill-small", "depthwise-separable", "mobilenet-v2"])
def test_digits_students_stay_within_one_and_a_half_points(variant):
    from accelkit.bench import bench

    base, student = bench("digits", [variant], batch_size=256, repeats=1, roofline=False).variants
    assert student.error is None
    assert student.flops_per_item <= base.flops_per_item / 3
    assert student.quality_drop <= 0.015


@pytest.mark.slow
def test_minilm_three_layer_student_keeps_embedding_cosine():
    from accelkit.bench import bench

    base, student = bench("minilm", ["distill-3layer"], batch_size=32, repeats=1, limit=128, roofline=False).variants
    assert student.error is None
    assert student.details["kept_layers"] == [0, 4, 5]
    assert student.quality["cosine_mean"] >= 0.93  # measured 0.950 on all 512 eval sentences (0.929 before)


def test_distillation_variants_are_registered_where_they_apply():
    from accelkit.variants import get_technique, list_variants
    from accelkit.workloads import get_workload

    digits = set(list_variants(get_workload("digits")))
    minilm = set(list_variants(get_workload("minilm")))
    assert {"distill-small", "depthwise-separable", "mobilenet-v2"} <= digits
    assert "distill-3layer" in minilm and "distill-3layer" not in digits
    assert all(get_technique(n).expensive for n in ("distill-small", "depthwise-separable", "mobilenet-v2", "distill-3layer"))


def test_later_config_fields_keep_earlier_cache_keys_and_are_validated():
    old = SentenceDistillConfig(keep_layers=(0, 4, 5), epochs=3)
    assert "dropout" not in old.to_dict() and "extra_sentences" not in old.to_dict()  # same key as before they existed
    new = SentenceDistillConfig(keep_layers=(0, 4, 5), epochs=3, dropout=False, extra_sentences="stdlib-docstrings")
    assert new.cache_key() != old.cache_key()
    assert SentenceDistillConfig.from_dict(new.to_dict()) == new
    # the config checks the shape of the names; which texts exist is the workload's to say
    with pytest.raises(ConfigError, match="extra_sentences"):
        SentenceDistillConfig(extra_sentences="stdlib-docstrings+")
    from accelkit.workloads.minilm import MiniLMWorkload

    with pytest.raises(ConfigError, match="wikipedia"):
        MiniLMWorkload().unlabelled_text("stdlib-docstrings+wikipedia")
    assert "init_from" not in old.to_dict()
    more = SentenceDistillConfig(keep_layers=(0, 4, 5), init_from=new.to_dict(),
                                 extra_sentences="stdlib-docstrings+package-docstrings-train")
    assert SentenceDistillConfig.from_dict(more.to_dict()) == more and more.cache_key() != new.cache_key()
    with pytest.raises(ConfigError, match="same layers"):
        SentenceDistillConfig(keep_layers=(0, 5), init_from=new.to_dict())


def test_training_without_dropout_is_deterministic_per_batch(tiny_bert):
    # with dropout off two students trained from the same start on the same data end identical,
    # whatever the global RNG does in between; with dropout on they differ
    teacher, tokenizer = tiny_bert
    target = sentence_embeddings(teacher, tokenizer, SENTENCES)

    def train(dropout: bool, noise_seed: int) -> list[torch.Tensor]:
        student = make_layer_student(teacher, (0, 1))
        student.encoder.layer[0].attention.output.dropout.p = 0.5  # make any dropout visible
        cfg = SentenceDistillConfig(keep_layers=(0, 1), epochs=1, lr=1e-3, batch_size=8, dropout=dropout, seed=0)

        def progress(step, total):
            torch.manual_seed(noise_seed + step)  # perturb the dropout masks between steps

        distill_sentence_encoder(student, target, tokenizer, SENTENCES, cfg, progress=progress)
        return [p.detach().clone() for p in student.parameters()]

    a, b = train(False, 1), train(False, 100)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    c, d = train(True, 1), train(True, 100)
    assert not all(torch.equal(x, y) for x, y in zip(c, d, strict=True))
