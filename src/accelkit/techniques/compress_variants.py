"""Registers the compression variants: structured/unstructured/attention-head pruning, distillation,
lightweight architectures. Each asks the workload what it offers; none names a workload."""

from __future__ import annotations

import copy
import hashlib
import json

import torch
from torch import nn

from accelkit.techniques.distill import (
    ClassifierDistillConfig,
    LogitKDConfig,
    SentenceDistillConfig,
    cached_sentence_student,
    distill_classifier,
    distill_sentence_encoder,
    shift_augment,
)
from accelkit.techniques.head_prune import HeadPruneConfig, prune_heads
from accelkit.techniques.lightweight import (
    DepthwiseConfig,
    compare_architectures,
    to_depthwise_separable,
)
from accelkit.techniques.prune import (
    FineTuneConfig,
    StructuredPruneConfig,
    UnstructuredPruneConfig,
    prune_structured,
    prune_unstructured_,
)
from accelkit.techniques.registry import BuildContext, Built, register_technique
from accelkit.workloads.base import RunSettings, cache_dir

# The settings each expensive variant uses; the benchmarks quote them.
PRUNE_50 = StructuredPruneConfig(ratio=0.5, importance="magnitude", steps=2, finetune=FineTuneConfig(epochs=3))
UNSTRUCTURED_50 = UnstructuredPruneConfig(amount=0.5)


def _example_inputs(workload):
    return workload.example_inputs(workload.calib_data(limit=2), RunSettings(batch_size=2))


# classifiers with labelled training data and one input tensor (digits, a user's CNN with train_dataset)
_TRAINABLE_CLASSIFIER = ("classifier", "trainable", "tensor-inputs")


@register_technique(
    "prune-structured-50",
    group="structure",
    description="50% of conv channels physically removed (Torch-Pruning, magnitude, 2 steps) + 3-epoch fine-tune per step",
    needs=_TRAINABLE_CLASSIFIER,
    expensive=True,
)
def _prune_structured_50(model: nn.Module, ctx: BuildContext) -> Built:
    wl = ctx.workload
    model = prune_structured(model.cpu(), _example_inputs(wl), PRUNE_50, dataset=wl.train_dataset(), loss_fn=wl.loss_fn)
    return Built(model.to(ctx.settings.device), ctx.settings, _pop_details(model))


# zeros make nothing faster on dense kernels: a candidate for the size objective only
@register_technique(
    "prune-unstructured-50",
    group="structure",
    description="50% of Linear/Conv weights zeroed (global magnitude): smaller zipped, NOT faster on dense kernels",
    objectives=("size",),
)
def _prune_unstructured_50(model: nn.Module, ctx: BuildContext) -> Built:
    prune_unstructured_(model, copy.deepcopy(UNSTRUCTURED_50))
    return Built(model, ctx.settings, _pop_details(model))


def _pop_details(model: nn.Module) -> dict:
    """What a technique function recorded on the model, moved into the Built record."""
    return dict(model.__dict__.pop("accelkit_details", None) or {})


# ---------------------------------------------------------------------------- distillation / lightweight

# layers (0, 4, 5): the best 3-subset by rank_layer_subsets on 200 calibration sentences (untrained cosine 0.70)
# 1,589 calibration + 14,820 stdlib docstring sentences, no dropout (the teacher is deterministic):
# held-out calibration cosine after 1 epoch on 6k sentences, (0,4,5) 0.901 vs 0.892 with dropout;
# (1,3,5) 0.883, (0,2,4) 0.765 — the layer set stays (0,4,5)
DISTILL_3LAYER = SentenceDistillConfig(
    keep_layers=(0, 4, 5), epochs=6, lr=2e-4, token_weight=1.0, extra_sentences="stdlib-docstrings", dropout=False
)
DIGITS_KD = ClassifierDistillConfig(kd=LogitKDConfig(temperature=4.0, alpha=0.7), epochs=30, lr=3e-3)


# a BERT-style sentence encoder with a tokenizer and unlabelled text to distil on
_SENTENCE_ENCODER = ("text", "encoder-blocks", "sentence-embedding", "unlabelled-text")


def _state_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def _cached_classifier_student(name: str, student: nn.Module, teacher: nn.Module, workload, spec: dict) -> nn.Module:
    """Distil ``student`` from ``teacher`` on the workload's training split once; cache by (spec, teacher weights)."""
    from safetensors.torch import load_file

    from accelkit.workloads._weights import save_state_atomic

    key = hashlib.sha256(
        json.dumps({**spec, "kd": DIGITS_KD.to_dict(), "teacher": _state_digest(teacher)}, sort_keys=True).encode()
    ).hexdigest()[:12]
    path = cache_dir() / "distill" / f"{workload.name}-{name}-{key}.safetensors"
    if path.exists():
        try:
            student.load_state_dict(load_file(str(path)))
            return student.eval()
        except Exception:  # stale or corrupt cache entry: train again
            path.unlink(missing_ok=True)
    data = workload.train_dataset()
    inputs, targets = data.tensors
    distill_classifier(student, teacher.eval(), inputs, targets, DIGITS_KD, augment=shift_augment)
    save_state_atomic(student, path)
    return student.eval()


def _student_built(student: nn.Module, teacher: nn.Module, ctx: BuildContext, **details) -> Built:
    rows = compare_architectures({"teacher": teacher, "student": student}, _example_inputs(ctx.workload))
    details = {**_pop_details(student), **details, "params_ratio": rows["student"]["params_ratio"],
               "flops_ratio": rows["student"]["flops_ratio"]}
    return Built(student.to(ctx.settings.device), ctx.settings, details)


def _distil_offered(name: str, model: nn.Module, ctx: BuildContext) -> Built:
    """Distil the workload's own ``student:<name>`` architecture from the baseline."""
    torch.manual_seed(0)
    teacher = model.cpu().eval()
    student = ctx.workload.student_architecture(name)
    spec = {"arch": f"student:{name}", "class": type(student).__name__,
            "params": sum(p.numel() for p in student.parameters())}
    student = _cached_classifier_student(name, student, teacher, ctx.workload, spec)
    return _student_built(student, teacher, ctx, student=f"{type(student).__name__} (the workload's student:{name})")


@register_technique(
    "distill-small",
    group="structure",
    description="the workload's smaller architecture (digits: DigitsCNN(width=16)) distilled from the baseline "
    "(logit KD, T=4, alpha=0.7)",
    needs=(*_TRAINABLE_CLASSIFIER, "student:small"),
    expensive=True,
)
def _distill_small(model: nn.Module, ctx: BuildContext) -> Built:
    return _distil_offered("small", model, ctx)


@register_technique(
    "depthwise-separable",
    group="structure",
    description="k×k convs (≥8 input channels) replaced by depthwise+pointwise, accuracy recovered by KD",
    needs=_TRAINABLE_CLASSIFIER,
    expensive=True,
)
def _depthwise_separable(model: nn.Module, ctx: BuildContext) -> Built:
    teacher = model.cpu().eval()
    torch.manual_seed(0)
    student, replaced = to_depthwise_separable(copy.deepcopy(teacher), DepthwiseConfig())
    student = _cached_classifier_student("depthwise", student, teacher, ctx.workload, {"arch": "dws", "replaced": replaced})
    return _student_built(student, teacher, ctx, replaced_layers=replaced)


@register_technique(
    "mobilenet-v2",
    group="structure",
    description="the workload's MobileNetV2-style net (digits: inverted residuals + SE, width 2: ~23% of the "
    "FLOPs) distilled from the baseline",
    needs=(*_TRAINABLE_CLASSIFIER, "student:mobilenet-v2"),
    expensive=True,
)
def _mobilenet_v2(model: nn.Module, ctx: BuildContext) -> Built:
    return _distil_offered("mobilenet-v2", model, ctx)


@register_technique(
    "distill-3layer",
    group="structure",
    description="3 of the 6 encoder layers (0, 4, 5) kept, trained to match the teacher on calibration sentences",
    needs=_SENTENCE_ENCODER,
    expensive=True,
)
def _distill_3layer(model: nn.Module, ctx: BuildContext) -> Built:
    student = cached_sentence_student(ctx.workload, model.cpu().eval(), DISTILL_3LAYER)
    return Built(student.to(ctx.settings.device), ctx.settings, _pop_details(student))


# ---------------------------------------------------------------------------- attention-head pruning

PRUNE_HEADS_50 = HeadPruneConfig(ratio=0.5, importance="taylor")
PRUNE_HEADS_SCORE_SENTENCES = 256  # calibration sentences the head importance is computed on
# recovery: every (pruned) layer kept, 1 epoch on calibration + stdlib docstring sentences (~5 min on 1 thread).
# token_weight=1 (hidden states matched token by token) scored the same on held-out calibration sentences
# (cosine 0.9577 vs 0.9578) for a longer run, so only the pooled embeddings are matched.
PRUNE_HEADS_DISTILL = SentenceDistillConfig(keep_layers=(0, 1, 2, 3, 4, 5), epochs=1, lr=1e-4)


def cached_head_pruned_student(workload, teacher: nn.Module, config: HeadPruneConfig = PRUNE_HEADS_50) -> nn.Module:
    """Prune ``config.ratio`` of the heads of a copy of ``teacher`` and distil it back on calibration and
    stdlib docstring sentences (never evaluation ones); cached by configs and teacher weights."""
    from accelkit.techniques.distill import _length_sorted_batches, cached_teacher_embeddings
    from accelkit.techniques.prune import load_pruned, save_pruned
    spec = {
        "heads": config.to_dict(),
        "score_sentences": PRUNE_HEADS_SCORE_SENTENCES,
        "distill": PRUNE_HEADS_DISTILL.to_dict(),
        "data": "calib+stdlib-docstrings",
        "teacher": _state_digest(teacher),
    }
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    folder = cache_dir() / "distill" / f"{workload.name}-prune-heads-{key}"
    if folder.exists():
        try:
            student = load_pruned(folder, copy.deepcopy(teacher))
            student.accelkit_details.update({"config": config.to_dict(), "cached": True})
            return student
        except Exception:  # stale or corrupt cache entry: prune and train again
            pass
    cfg = PRUNE_HEADS_DISTILL
    calib = workload.calib_data()
    score = [b for _, b in _length_sorted_batches(workload.tokenizer, calib[:PRUNE_HEADS_SCORE_SENTENCES], 32, cfg.max_length)]
    student = prune_heads(copy.deepcopy(teacher), score, copy.deepcopy(config))
    details = dict(student.accelkit_details)
    sentences = list(calib) + list(workload.unlabelled_text("stdlib-docstrings"))
    targets = cached_teacher_embeddings(workload, teacher, sentences, cfg.max_length)
    student = distill_sentence_encoder(student, targets, workload.tokenizer, sentences, cfg)
    student.accelkit_details = {**details, "distill": cfg.to_dict(), "train_sentences": len(sentences)}
    save_pruned(student, folder)
    student.accelkit_details["cached"] = False
    return student.eval()


@register_technique(
    "prune-heads-50",
    group="structure",
    description="50% of the encoder's attention heads physically removed (Taylor head importance), recovered by "
    "distillation",
    needs=_SENTENCE_ENCODER,
    expensive=True,
)
def _prune_heads_50(model: nn.Module, ctx: BuildContext) -> Built:
    student = cached_head_pruned_student(ctx.workload, model.cpu().eval())
    return Built(student.to(ctx.settings.device), ctx.settings, dict(student.accelkit_details))
