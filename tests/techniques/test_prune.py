"""Pruning: structured channels really removed, saved and loaded; unstructured sparsity; 2:4 masks."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from accelkit.errors import ConfigError, DeviceUnavailableError, SchemaError
from accelkit.techniques.prune import (
    FineTuneConfig,
    PruningError,
    StructuredPruneConfig,
    UnstructuredPruneConfig,
    apply_semi_structured_24_,
    load_pruned,
    mask_2_to_4,
    prune_structured,
    prune_unstructured_,
    save_pruned,
    semi_structured_unavailable_reason,
)
from accelkit.workloads.digits import DigitsCNN


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # tiny models gain nothing from a second thread, and on a shared CI box idle-spinning
    # OpenMP workers make them many times slower
    from accelkit.measure import thread_count

    with thread_count(1):
        yield


X = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def _tiny_cnn() -> DigitsCNN:
    torch.manual_seed(0)
    return DigitsCNN(width=16).eval()


def _tiny_dataset(n: int = 64) -> torch.utils.data.TensorDataset:
    gen = torch.Generator().manual_seed(1)
    return torch.utils.data.TensorDataset(torch.rand(n, 1, 8, 8, generator=gen), torch.randint(0, 10, (n,), generator=gen))


def test_structured_pruning_removes_half_the_channels_and_still_runs():
    model = _tiny_cnn()
    before = sum(p.numel() for p in model.parameters())
    pruned = prune_structured(copy.deepcopy(model), X[:1], StructuredPruneConfig(ratio=0.5))
    after = sum(p.numel() for p in pruned.parameters())
    # conv weights scale with in×out channels: halving both leaves about a quarter
    assert after < 0.35 * before
    assert pruned.blocks[0][0].out_channels == 8
    assert pruned.blocks[1][3].in_channels == 16 and pruned.blocks[1][3].out_channels == 16
    assert pruned.blocks[0][1].num_features == 8  # coupled batch norm pruned with its conv
    assert pruned.head[-1].out_features == 10  # output layer kept whole by default
    assert pruned(X).shape == (4, 10)
    assert pruned.accelkit_details["params_after"] == after


def test_iterative_taylor_pruning_with_fine_tune_runs_and_shrinks():
    cfg = StructuredPruneConfig(ratio=0.5, importance="taylor", steps=2, taylor_batches=1,
                                finetune=FineTuneConfig(epochs=1, batch_size=32))
    pruned = prune_structured(_tiny_cnn(), X[:1], cfg, dataset=_tiny_dataset(), loss_fn=nn.functional.cross_entropy)
    assert pruned.blocks[2][3].out_channels == 16
    assert torch.isfinite(pruned(X)).all()


def test_pruned_model_saves_and_loads_with_identical_outputs(tmp_path):
    pruned = prune_structured(_tiny_cnn(), X[:1], StructuredPruneConfig(ratio=0.5))
    save_pruned(pruned, tmp_path / "pruned")
    assert sorted(p.name for p in (tmp_path / "pruned").iterdir()) == ["model.safetensors", "pruned.json"]
    loaded = load_pruned(tmp_path / "pruned", DigitsCNN(width=16))
    assert torch.equal(loaded(X), pruned(X))
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in pruned.parameters())


def test_load_pruned_refuses_a_folder_without_its_files(tmp_path):
    with pytest.raises(SchemaError, match="pruned.json"):
        load_pruned(tmp_path, DigitsCNN(width=16))


@pytest.mark.parametrize("ratio", [0, 1, -0.2, 1.5])
def test_ratio_outside_open_unit_interval_is_a_config_error(ratio):
    with pytest.raises(ConfigError, match="ratio"):
        StructuredPruneConfig(ratio=ratio)


def test_bad_structured_configs_name_the_field():
    with pytest.raises(ConfigError, match="importance"):
        StructuredPruneConfig(importance="random-guess")
    with pytest.raises(ConfigError, match="steps"):
        StructuredPruneConfig(steps=0)
    with pytest.raises(ConfigError, match="training data"):
        prune_structured(_tiny_cnn(), X[:1], StructuredPruneConfig(importance="taylor"))
    with pytest.raises(ConfigError, match="no layer named 'nope'"):
        prune_structured(_tiny_cnn(), X[:1], StructuredPruneConfig(ignore=("nope",)))


def test_config_round_trips_through_dict():
    cfg = StructuredPruneConfig(ratio=0.3, steps=2, ignore=("head.2",), finetune=FineTuneConfig(epochs=2))
    assert StructuredPruneConfig.from_dict(cfg.to_dict()) == cfg


def test_model_that_cannot_run_on_the_example_is_a_pruning_error():
    with pytest.raises(PruningError, match="does not run on the example inputs"):
        prune_structured(_tiny_cnn(), torch.randn(1, 3, 8, 8), StructuredPruneConfig())


def test_unstructured_pruning_is_permanent_and_reports_sparsity():
    model = _tiny_cnn()
    report = prune_unstructured_(model, UnstructuredPruneConfig(amount=0.6))
    assert report["sparsity"] == pytest.approx(0.6, abs=0.01)
    assert set(report["layer_sparsity"]) == {"blocks.0.0", "blocks.0.3", "blocks.1.0", "blocks.1.3",
                                              "blocks.2.0", "blocks.2.3", "head.2"}
    assert "no speed-up" in report["note"]
    # made permanent: plain parameters, no masks or hooks left behind
    assert not any(name.endswith("_orig") for name, _ in model.named_parameters())
    assert not any(m._forward_pre_hooks for m in model.modules())
    assert model(X).shape == (4, 10)


def test_unstructured_bad_amount_and_no_layers():
    with pytest.raises(ConfigError, match="amount"):
        UnstructuredPruneConfig(amount=1.0)
    with pytest.raises(ConfigError, match="layer_types"):
        UnstructuredPruneConfig(layer_types=("Embedding",))
    with pytest.raises(PruningError, match="no"):
        prune_unstructured_(nn.Sequential(nn.ReLU()), UnstructuredPruneConfig())


def test_2_to_4_mask_keeps_the_two_largest_of_every_four():
    w = torch.tensor([[1.0, -4.0, 3.0, 0.5, 0.1, 0.2, -0.3, 0.4]])
    masked = mask_2_to_4(w)
    assert (masked != 0).tolist() == [[False, True, True, False, False, False, True, True]]
    assert torch.equal(masked[masked != 0], w[masked != 0])
    with pytest.raises(ConfigError, match="divisible by 4"):
        mask_2_to_4(torch.ones(2, 6))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal; the gpu test covers CUDA")
def test_2_to_4_without_cuda_says_why():
    assert "CUDA" in semi_structured_unavailable_reason()
    with pytest.raises(DeviceUnavailableError, match="sparse tensor cores"):
        apply_semi_structured_24_(nn.Sequential(nn.Linear(64, 64)))


@pytest.mark.gpu
@pytest.mark.skipif(semi_structured_unavailable_reason() is not None, reason=str(semi_structured_unavailable_reason()))
def test_2_to_4_on_gpu_matches_the_masked_dense_layer():
    torch.manual_seed(0)
    layer = nn.Linear(128, 128).half().cuda()
    dense = nn.Linear(128, 128).half().cuda()
    dense.load_state_dict(layer.state_dict())
    dense.weight.data = mask_2_to_4(dense.weight.data)
    apply_semi_structured_24_(nn.Sequential(layer))
    x = torch.randn(64, 128, device="cuda", dtype=torch.half)
    torch.testing.assert_close(layer(x), dense(x), rtol=1e-2, atol=1e-2)


def test_variants_are_registered_for_digits_only_where_they_apply():
    from accelkit.variants import get_technique, list_variants
    from accelkit.workloads import get_workload

    names = list_variants(get_workload("digits"))
    assert {"prune-structured-50", "prune-unstructured-50"} <= set(names)
    assert get_technique("prune-structured-50").expensive
    assert "prune-structured-50" not in list_variants(get_workload("minilm"))


@pytest.mark.slow
def test_prune_structured_50_variant_keeps_digits_accuracy_within_one_point():
    from accelkit.bench import bench

    res = bench("digits", ["prune-structured-50"], batch_size=256, repeats=1, roofline=False)
    base, pruned = res.variants
    assert pruned.error is None
    assert pruned.params < 0.3 * base.params
    assert pruned.quality_drop <= 0.01
