"""text-generation's task: registered under its own name (never inferred from a causal-LM config),
and its greedy-agreement metrics on hand-made token rows."""

from __future__ import annotations

import pytest
import torch

from accelkit.errors import ModelFolderError
from accelkit.tasks import get_task, infer_task
from accelkit.tasks.text_generation import generation_agreement


def test_the_task_generates_and_is_asked_for_by_name():
    spec = get_task("text-generation")
    assert spec.method == "generate" and spec.item_unit == "tokens" and "generate" in spec.offers
    assert spec.primary_metric == "greedy_agreement"
    assert infer_task(["LlamaForCausalLM"]) == "causal-lm"  # a causal-LM folder keeps its scoring task


def test_identical_outputs_agree_fully():
    ref = torch.tensor([[5.0, 6, 7, 8], [1, 2, 3, 4]])
    q = generation_agreement(ref.clone(), ref)
    assert q == {"greedy_agreement": 1.0, "prefix_agreement": 1.0, "identical_outputs": 1.0, "first_divergence": 4.0}


def test_a_divergence_counts_whole_output_and_prefix_apart():
    ref = torch.tensor([[5.0, 6, 7, 8], [1, 2, 3, 4]])
    out = torch.tensor([[5.0, 9, 7, 8], [1, 2, 3, 4]])  # row 0 differs at position 1 only, then agrees again
    q = generation_agreement(out, ref)
    assert q["greedy_agreement"] == pytest.approx(7 / 8)
    assert q["prefix_agreement"] == pytest.approx(5 / 8)  # 1 + 4 positions before the first divergence
    assert q["identical_outputs"] == pytest.approx(0.5)
    assert q["first_divergence"] == pytest.approx(2.5)


def test_positions_after_a_reference_row_ends_are_not_scored():
    ref = torch.tensor([[5.0, 6, -1, -1]])
    out = torch.tensor([[5.0, 6, 3, 3]])
    assert generation_agreement(out, ref)["greedy_agreement"] == 1.0


def test_a_tokenizer_without_pad_pads_with_eos_on_the_left():
    from types import SimpleNamespace

    spec = get_task("text-generation")
    tok = SimpleNamespace(pad_token=None, eos_token="</s>", padding_side="right")
    spec.prepare_tokenizer(tok, "m")
    assert tok.pad_token == "</s>" and tok.padding_side == "left"
    with pytest.raises(ModelFolderError, match="neither a pad nor an EOS"):
        spec.prepare_tokenizer(SimpleNamespace(pad_token=None, eos_token=None, padding_side="right"), "m")
