"""Layer skipping: greedy choice within budget, the model left intact, bad indices refused."""

from __future__ import annotations

import pytest
import torch
from tiny_bert import tiny_bert as _tiny_bert
from torch import nn

from accelkit.errors import ConfigError
from accelkit.techniques.layer_skip import (
    LayerSkipConfig,
    SkippedBlock,
    apply_layer_skip_,
    layer_sensitivity,
    select_layers_to_skip,
)


def _inputs(n: int = 8, t: int = 10) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    mask = torch.ones(n, t, dtype=torch.long)
    mask[::2, t // 2 :] = 0
    return {"input_ids": torch.randint(1, 50, (n, t), generator=g), "attention_mask": mask}


def _pooled(model: nn.Module, inputs: dict) -> torch.Tensor:
    with torch.inference_mode():
        h = model(**inputs).last_hidden_state
    m = inputs["attention_mask"].unsqueeze(-1).float()
    return (h * m).sum(1) / m.sum(1)


def test_greedy_choice_stays_within_budget_and_leaves_the_model_intact():
    model = _tiny_bert()
    inputs = _inputs()
    before = _pooled(model, inputs)
    result = select_layers_to_skip(model, [inputs], LayerSkipConfig(max_quality_drop=0.1))
    torch.testing.assert_close(_pooled(model, inputs), before, rtol=0, atol=0)
    assert result.skip, "a random 4-layer encoder tolerates skipping one layer at cosine 0.9"
    assert 1 - result.quality <= 0.1
    assert [c["quality"] for c in result.curve] == sorted((c["quality"] for c in result.curve), reverse=True)
    apply_layer_skip_(model, result.skip)
    after = _pooled(model, inputs)
    cos = nn.functional.cosine_similarity(after, before, dim=1).mean()
    assert float(cos) == pytest.approx(result.quality, abs=1e-5)
    assert sum(isinstance(m, SkippedBlock) for m in model.encoder.layer) == len(result.skip)


def test_sensitivity_ranks_every_block():
    sens = layer_sensitivity(_tiny_bert(), [_inputs()])
    assert [s["block"] for s in sens] == [0, 1, 2, 3]
    assert all(0 < s["quality_without"] <= 1 for s in sens)


def test_zero_budget_skips_nothing():
    result = select_layers_to_skip(_tiny_bert(), [_inputs()], LayerSkipConfig(max_quality_drop=0.0))
    assert result.skip == [] and not result.met_budget


@pytest.mark.parametrize("skip", [[4], [-1], [0, 1, 2, 3]])
def test_bad_skip_indices_are_refused(skip):
    with pytest.raises(ConfigError):
        apply_layer_skip_(_tiny_bert(), skip)


@pytest.mark.parametrize("bad", [{"max_quality_drop": -0.1}, {"max_skipped": -1}, {"skip": [-2]}])
def test_bad_config_raises(bad):
    with pytest.raises(ConfigError):
        LayerSkipConfig(**bad)
