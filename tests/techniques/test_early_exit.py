"""Early exit: parity when nothing exits, batched == one-at-a-time, errors, save/load."""

from __future__ import annotations

import copy

import pytest
import torch
from tiny_bert import bert_inputs as _bert_inputs
from tiny_bert import tiny_bert as _tiny_bert
from torch import nn

from accelkit.errors import ConfigError, SchemaError
from accelkit.techniques.early_exit import (
    BlocksNotFoundError,
    EarlyExitConfig,
    apply_early_exit,
    calibrate_thresholds,
    collect_exit_outputs,
    find_blocks,
    load_early_exit,
    save_early_exit,
)
from accelkit.workloads.digits import DigitsCNN
from accelkit.workloads.gpt_mini import GPTConfig, GPTMini
from accelkit.workloads.minilm import mean_pool


def _digits_cnn() -> nn.Module:
    torch.manual_seed(0)
    model = DigitsCNN(width=8).eval()
    for m in model.modules():  # non-trivial BN statistics so rows differ in depth
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model


def _images(n: int = 24) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def _median_thresholds(model, inputs) -> list[float]:
    """Thresholds at each head's median score, so rows leave at different blocks."""
    outs, _ = collect_exit_outputs(model, [inputs])
    if model.mode == "embedding":
        scores = [torch.ones(1)] + [
            nn.functional.cosine_similarity(o, outs[k - 1], dim=-1) for k, o in enumerate(outs) if k
        ]
    else:
        scores = [o.softmax(-1).amax(-1) for o in outs]
    return [_midpoint(s) for s in scores]


def _midpoint(scores: torch.Tensor) -> float:
    """Half-way between the two middle scores: no row sits on the threshold, where batched and
    single-row float rounding could decide differently."""
    ordered = scores.flatten().sort().values
    n = len(ordered)
    return float(ordered[0]) if n == 1 else float((ordered[n // 2 - 1] + ordered[n // 2]) / 2)


# ------------------------------------------------------------------ parity


@pytest.mark.parametrize("thresholds", [None, [2.0, 2.0]])
def test_never_exiting_cnn_equals_the_original(thresholds):
    model = _digits_cnn()
    x = _images()
    ref = model(x)
    wrapped = apply_early_exit(model, EarlyExitConfig(thresholds=thresholds), x[:2])
    assert not wrapped.can_exit()
    with torch.inference_mode():
        out = wrapped(x)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    assert wrapped.last_exit_blocks.tolist() == [2] * len(x)


def test_never_exiting_bert_equals_the_original():
    model = _tiny_bert()
    inputs = _bert_inputs()
    with torch.inference_mode():
        ref = model(**inputs).last_hidden_state
        wrapped = apply_early_exit(model, EarlyExitConfig(criterion="stability"), inputs)
        out = wrapped(**inputs)
    assert wrapped.mode == "embedding" and isinstance(out, tuple)
    torch.testing.assert_close(out[0], ref, rtol=0, atol=0)


def test_never_exiting_gpt_equals_the_original():
    torch.manual_seed(0)
    model = GPTMini(GPTConfig(block_size=16, n_layer=3, n_head=2, n_embd=32)).eval()
    idx = torch.randint(0, 256, (4, 16))
    with torch.inference_mode():
        ref = model(idx)
        wrapped = apply_early_exit(model, EarlyExitConfig(), idx)
        out = wrapped(idx)
    assert wrapped.heads[0].kind == "token-classifier"
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


# ------------------------------------------------------------------ batched exit


@pytest.mark.parametrize("criterion", ["confidence", "entropy", "patience"])
def test_batched_exit_matches_one_at_a_time_cnn(criterion):
    model = _digits_cnn()
    x = _images(32)
    wrapped = apply_early_exit(model, EarlyExitConfig(criterion=criterion, patience=1), x[:2])
    if criterion == "confidence":
        wrapped.thresholds = _median_thresholds(wrapped, x)
    elif criterion == "entropy":
        outs, _ = collect_exit_outputs(wrapped, [x])
        from accelkit.techniques.early_exit import _normalized_entropy

        wrapped.thresholds = [_midpoint(_normalized_entropy(o)) for o in outs]
    else:
        wrapped.thresholds = [1.0, 1.0]
    with torch.inference_mode():
        batched = wrapped(x)
        blocks = wrapped.last_exit_blocks.clone()
        single, single_blocks = [], []
        for i in range(len(x)):
            single.append(wrapped(x[i : i + 1]))
            single_blocks.append(int(wrapped.last_exit_blocks[0]))
    torch.testing.assert_close(batched, torch.cat(single), rtol=1e-5, atol=1e-5)
    assert blocks.tolist() == single_blocks
    if criterion != "patience":
        assert len(set(single_blocks)) >= 2, "the test should exercise rows leaving at different blocks"


def test_batched_exit_matches_one_at_a_time_bert():
    model = _tiny_bert()
    inputs = _bert_inputs(8)
    with torch.inference_mode():
        wrapped = apply_early_exit(model, EarlyExitConfig(criterion="stability"), inputs)
        wrapped.thresholds = _median_thresholds(wrapped, inputs)
        batched = wrapped(**inputs)[0]
        blocks = wrapped.last_exit_blocks.clone()
        for i in range(len(blocks)):
            row = {k: v[i : i + 1] for k, v in inputs.items()}
            single = wrapped(**row)[0]
            n_tok = int(row["attention_mask"].sum())
            # compare the real tokens: pooled output is what the workload reads
            torch.testing.assert_close(batched[i, :n_tok], single[0, :n_tok], rtol=1e-4, atol=1e-5)
            assert int(wrapped.last_exit_blocks[0]) == int(blocks[i])
    assert len(set(blocks.tolist())) >= 2


def test_exit_histogram_and_details_count_rows():
    model = _digits_cnn()
    x = _images(32)
    wrapped = apply_early_exit(model, EarlyExitConfig(), x[:2])
    wrapped.thresholds = _median_thresholds(wrapped, x)
    with torch.inference_mode():
        wrapped(x)
    hist = wrapped.accelkit_details["exit_histogram"]
    assert sum(h["rows"] for h in hist) == 32
    assert [h["rows"] for h in hist] == torch.bincount(wrapped.last_exit_blocks, minlength=3).tolist()


# ------------------------------------------------------------------ errors


def test_missing_blocks_name_how_to_declare_them():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(BlocksNotFoundError, match="block_names"):
        apply_early_exit(model, EarlyExitConfig(), torch.rand(2, 1, 8, 8))
    with pytest.raises(BlocksNotFoundError, match="features.9"):
        find_blocks(_digits_cnn(), ["blocks.0", "features.9"])


def test_declared_blocks_that_forward_never_calls_are_refused():
    model = _digits_cnn()
    model.spare = nn.Identity()
    with pytest.raises(BlocksNotFoundError, match="block_names"):
        apply_early_exit(model, EarlyExitConfig(block_names=["blocks.0", "spare", "blocks.2"]), _images(2))


def test_declared_block_names_work():
    model = _digits_cnn()
    x = _images(8)
    cfg = EarlyExitConfig(block_names=["blocks.0", "blocks.1", "blocks.2"], final_names=["head"])
    wrapped = apply_early_exit(model, cfg, x[:2])
    torch.testing.assert_close(wrapped(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    "bad", [{"criterion": "vibes"}, {"patience": 0}, {"exit_after": []}, {"training": "magic"}, {"lr": 0.0}]
)
def test_bad_config_raises_config_error(bad):
    with pytest.raises(ConfigError):
        EarlyExitConfig(**bad)


def test_config_round_trips_and_rejects_unknown_keys():
    cfg = EarlyExitConfig(criterion="entropy", thresholds=[0.1, None])
    assert EarlyExitConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown keys"):
        EarlyExitConfig.from_dict({"criterion": "entropy", "threshold": 0.3})


def test_exit_after_the_last_block_is_refused():
    with pytest.raises(ConfigError, match="exit_after"):
        apply_early_exit(_digits_cnn(), EarlyExitConfig(exit_after=[2]), _images(2))


def test_a_budget_no_threshold_meets_falls_back_to_the_full_model():
    model = _tiny_bert()
    inputs = _bert_inputs(8)
    wrapped = apply_early_exit(model, EarlyExitConfig(criterion="stability"), inputs)
    # untrained heads never reproduce the final embedding exactly: cosine 1.0 is out of reach
    result = calibrate_thresholds(wrapped, [inputs], max_quality_drop=0.0)
    assert not result.met_budget and "full model" in result.message
    assert wrapped.thresholds == [None] * 3 and not wrapped.can_exit()
    with torch.inference_mode():
        torch.testing.assert_close(wrapped(**inputs)[0], model(**inputs).last_hidden_state, rtol=0, atol=0)
    assert result.curve and all("compute_saved" in c for c in result.curve)


# ------------------------------------------------------------------ save / load


def test_save_then_load_gives_identical_outputs(tmp_path):
    model = _digits_cnn()
    x = _images(32)
    wrapped = apply_early_exit(model, EarlyExitConfig(), x[:2])
    wrapped.thresholds = _median_thresholds(wrapped, x)
    wrapped.accelkit_details = {"note": "kept"}
    with torch.inference_mode():
        before = wrapped(x)
        blocks = wrapped.last_exit_blocks.clone()
    save_early_exit(wrapped, tmp_path / "ee")
    loaded = load_early_exit(tmp_path / "ee", _digits_cnn())
    with torch.inference_mode():
        after = loaded(x)
    assert loaded.thresholds == pytest.approx(wrapped.thresholds)
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    assert loaded.last_exit_blocks.tolist() == blocks.tolist()
    assert loaded.accelkit_details["note"] == "kept"
    assert not list(tmp_path.joinpath("ee").glob("*.tmp"))


def test_loading_a_folder_without_metadata_raises_schema_error(tmp_path):
    with pytest.raises(SchemaError, match="save_early_exit"):
        load_early_exit(tmp_path, _digits_cnn())


# ------------------------------------------------------------------ calibration on real data


def test_calibrated_digits_exit_respects_the_budget_on_held_out_data(digits_workload, digits_model, tmp_path, monkeypatch):
    """Heads trained and thresholds tuned on calibration data only; the eval set checks them."""
    import copy

    from accelkit.techniques.early_exit import build_early_exit

    monkeypatch.setenv("ACCELKIT_CACHE", str(tmp_path))
    budget = 0.01
    cfg = EarlyExitConfig(epochs=60, lr=1e-2, shift_augment=False)
    wrapped = build_early_exit(
        copy.deepcopy(digits_model), digits_workload, cfg, max_quality_drop=budget, train_fraction=0.5, batch_size=256
    )
    calib = wrapped.accelkit_details["calibration"]
    assert calib["met_budget"] and calib["compute_saved"] > 0.2
    assert 1 - calib["quality"] <= budget
    curve = wrapped.accelkit_details["tradeoff_curve"]
    assert {"threshold", "compute_saved", "quality"} <= set(curve[0])

    x, y = digits_workload.eval_data()["inputs"], digits_workload.eval_data()["labels"]
    with torch.inference_mode():
        full = digits_model(x)
        wrapped.reset_stats()
        early = wrapped(x)
    agreement = float((early.argmax(-1) == full.argmax(-1)).float().mean())
    drop = float((full.argmax(-1) == y).float().mean() - (early.argmax(-1) == y).float().mean())
    # 450 held-out images: allow a binomial margin of two standard errors over the budget
    assert 1 - agreement <= budget + 0.02
    assert drop <= budget + 0.02
    assert wrapped.accelkit_details["compute_saved_measured"] > 0.2

    # the second build comes from the cache: same thresholds, same outputs
    again = build_early_exit(
        copy.deepcopy(digits_model), digits_workload, cfg, max_quality_drop=budget, train_fraction=0.5, batch_size=256
    )
    assert again.thresholds == pytest.approx(wrapped.thresholds)
    with torch.inference_mode():
        torch.testing.assert_close(again(x), early, rtol=0, atol=0)


def test_early_exit_variants_are_registered(digits_workload, minilm_workload):
    from accelkit.variants import list_variants

    assert "early-exit" in list_variants(digits_workload)
    assert {"early-exit", "layer-skip"} <= set(list_variants(minilm_workload))


def test_accelkit_save_refuses_the_variant_and_names_its_own_save(digits_workload, digits_model, tmp_path,
                                                                  monkeypatch):
    """accelkit.save never re-runs a plan on load, and the exit heads are no layer its torch runtime
    records: the wrapper is refused at save time, pointing at save_early_exit, which round-trips."""
    import accelkit.saving as saving
    from accelkit.runtimes import ShipError
    from accelkit.techniques.early_exit import variant as eev
    from accelkit.variants import build_variant
    from accelkit.workloads import RunSettings

    monkeypatch.setenv("ACCELKIT_CACHE", str(tmp_path / "cache"))
    small = {**eev.EARLY_EXIT_PRESETS["classifier"], "config": EarlyExitConfig(epochs=20, shift_augment=False)}
    monkeypatch.setitem(eev.EARLY_EXIT_PRESETS, "classifier", small)
    settings = RunSettings(batch_size=64)
    built = build_variant("early-exit", digits_model, settings, digits_workload)
    model, settings = built.model, built.settings
    with pytest.raises(ShipError, match="early_exit.*own save function"):
        saving.save((model, settings), tmp_path / "saved", plan="early-exit", workload="digits")
    assert not (tmp_path / "saved").exists()
    model.thresholds = [0.9, 0.8]  # differs from what a rebuild would calibrate
    x = digits_workload.eval_data(limit=64)["inputs"]
    with torch.inference_mode():
        before = model(x)
    save_early_exit(model, tmp_path / "ee")
    loaded = load_early_exit(tmp_path / "ee", copy.deepcopy(digits_model))
    assert loaded.thresholds == pytest.approx([0.9, 0.8])
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), before, rtol=0, atol=0)


def test_joint_training_teaches_every_head_the_labels(digits_workload):
    from accelkit.techniques.early_exit import train_exit_heads_

    x, y = digits_workload.train_inputs[:384], digits_workload.train_labels[:384]
    model = _digits_cnn()
    wrapped = apply_early_exit(model, EarlyExitConfig(training="joint", epochs=180, lr=3e-2), x[:2])
    batches = [x[i : i + 64] for i in range(0, len(x), 64)]
    train_exit_heads_(wrapped, batches, labels=y)
    outs, final = collect_exit_outputs(wrapped, [x])
    for logits in [*outs, final]:
        assert float((logits.argmax(-1) == y).float().mean()) > 0.6  # chance is 0.1


def test_joint_training_needs_labels():
    from accelkit.techniques.early_exit import train_exit_heads_

    wrapped = apply_early_exit(_digits_cnn(), EarlyExitConfig(training="joint"), _images(2))
    with pytest.raises(ConfigError, match="labels"):
        train_exit_heads_(wrapped, [_images(8)])


# ------------------------------------------------------------------ joint self-distillation (embeddings)


def _joint_bert(epochs: int = 40) -> tuple[nn.Module, object, list[dict[str, torch.Tensor]], torch.Tensor]:
    from accelkit.techniques.early_exit import train_exit_heads_

    model = _tiny_bert()
    batches = [_bert_inputs(8, 10) for _ in range(1)] + [
        {k: v.roll(i, 0) for k, v in _bert_inputs(8, 10).items()} for i in range(1, 4)
    ]
    with torch.no_grad():
        reference = torch.cat([mean_pool(model(**b).last_hidden_state, b["attention_mask"]) for b in batches])
    cfg = EarlyExitConfig(criterion="stability", training="joint", joint_epochs=epochs, joint_lr=3e-3)
    wrapped = apply_early_exit(model, cfg, batches[0])
    report = train_exit_heads_(wrapped, batches)
    return wrapped, report, batches, reference


def test_joint_embedding_training_brings_every_exit_closer_to_the_untouched_model():
    wrapped, report, batches, reference = _joint_bert()
    outs, final = collect_exit_outputs(wrapped, batches)
    ridge = [h["heldout_cosine"] for h in report["heads"]]  # frozen-backbone heads, before joint training
    for k, out in enumerate(outs):
        cos = float(nn.functional.cosine_similarity(out, reference, dim=-1).mean())
        assert cos > max(ridge[k], 0.9), (k, cos, ridge[k])
    assert float(nn.functional.cosine_similarity(final, reference, dim=-1).mean()) > 0.9
    assert report["epoch_losses"][-1] < report["epoch_losses"][0]


def test_calibration_against_a_reference_counts_the_drift_of_full_depth_rows():
    wrapped, _, batches, reference = _joint_bert(epochs=2)
    _, final = collect_exit_outputs(wrapped, batches)
    drift = float(nn.functional.cosine_similarity(final, reference, dim=-1).double().mean())
    assert drift < 1.0
    result = calibrate_thresholds(wrapped, batches, max_quality_drop=0.0, reference=reference)
    assert not result.met_budget and wrapped.thresholds == [None] * 3
    assert result.quality == pytest.approx(drift, abs=1e-6)  # full depth is scored, not assumed perfect
    with pytest.raises(ConfigError, match="reference"):
        calibrate_thresholds(wrapped, batches, max_quality_drop=0.1, reference=reference[:3])


def test_a_jointly_trained_model_saves_and_loads_its_backbone(tmp_path):
    wrapped, _, batches, _ = _joint_bert(epochs=2)
    wrapped.thresholds = _median_thresholds(wrapped, batches[0])
    with torch.inference_mode():
        before = wrapped(**batches[0])[0]
    save_early_exit(wrapped, tmp_path / "ee")
    loaded = load_early_exit(tmp_path / "ee", _tiny_bert())  # the untouched baseline
    with torch.inference_mode():
        torch.testing.assert_close(loaded(**batches[0])[0], before, rtol=0, atol=0)
    (tmp_path / "ee" / "backbone.safetensors").unlink()
    with pytest.raises(SchemaError, match="backbone"):
        load_early_exit(tmp_path / "ee", _tiny_bert())


def test_staged_training_makes_the_anchor_exit_good_and_keeps_full_depth_close():
    from accelkit.techniques.early_exit import train_exit_heads_

    model = _tiny_bert()
    batches = [{k: v.roll(i, 0) for k, v in _bert_inputs(8, 10).items()} for i in range(4)]
    with torch.no_grad():
        reference = torch.cat([mean_pool(model(**b).last_hidden_state, b["attention_mask"]) for b in batches])
    cfg = EarlyExitConfig(criterion="stability", training="staged", exit_after=[1, 2], anchor_exit=2,
                          joint_epochs=40, joint_lr=3e-3)
    wrapped = apply_early_exit(model, cfg, batches[0])
    before, _ = collect_exit_outputs(wrapped, batches)
    report = train_exit_heads_(wrapped, batches)
    outs, final = collect_exit_outputs(wrapped, batches)
    cos = [float(nn.functional.cosine_similarity(o, reference, dim=-1).mean()) for o in (*before, *outs, final)]
    untrained_anchor, anchor, full = cos[1], cos[3], cos[4]
    assert anchor > max(untrained_anchor, 0.95) and full > 0.95, cos
    assert report["stage1_losses"][-1] < report["stage1_losses"][0]
    assert report["anchor_exit"] == 2 and all(p.requires_grad for p in wrapped.parameters())


def test_staged_training_config_errors():
    with pytest.raises(ConfigError, match="anchor_exit"):
        EarlyExitConfig(training="staged", exit_after=[1, 2], anchor_exit=3)
    wrapped = apply_early_exit(_digits_cnn(), EarlyExitConfig(training="staged"), _images(2))
    from accelkit.techniques.early_exit import train_exit_heads_

    with pytest.raises(ConfigError, match="embedding models"):
        train_exit_heads_(wrapped, [_images(8)])
