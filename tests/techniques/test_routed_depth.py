"""Routed depth: rows follow the router, the full path is exact, calibration keeps the budget."""

from __future__ import annotations

import pytest
import torch
from tiny_bert import bert_inputs, tiny_bert

from accelkit.errors import ConfigError, SchemaError
from accelkit.techniques.distill import SentenceDistillConfig, make_layer_student
from accelkit.techniques.routed_depth import (
    RoutedDepthConfig,
    apply_routed_depth,
    calibrate_router,
    load_routed_depth,
    save_routed_depth,
)


def _routed():
    full = tiny_bert()
    return full, apply_routed_depth(full, [make_layer_student(full, (0,)), make_layer_student(full, (0, 2))])


def _calib(n_batches: int = 4) -> list[dict[str, torch.Tensor]]:
    return [bert_inputs(n=8, t=10, seed=s) for s in range(n_batches)]


def _pooled(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).float()
    return (hidden * m).sum(1) / m.sum(1)


def test_uncalibrated_router_runs_the_full_model_exactly():
    full, model = _routed()
    x = bert_inputs()
    assert model.depths == [1, 2, 4] and not model.can_route()
    assert torch.equal(model(**x), full(**x).last_hidden_state)
    assert model.accelkit_details["layers_saved_measured"] == 0.0


def test_each_row_gets_the_output_of_the_path_it_was_routed_to():
    full, model = _routed()
    x = bert_inputs(n=6)
    # a hand-set router: rows 0-1 predicted good for the 1-layer path, 2-3 for the 2-layer one, 4-5 neither
    score = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    model.predicted_quality = lambda feats: score  # type: ignore[method-assign]
    model.thresholds = [0.5, 0.5]
    out = model(**x)
    for rows, path in (([0, 1], model.paths[0]), ([2, 3], model.paths[1]), ([4, 5], full)):
        sub = {k: v[rows] for k, v in x.items()}
        torch.testing.assert_close(out[rows], path(**sub).last_hidden_state, rtol=1e-5, atol=1e-5)
    assert [h["rows"] for h in model.route_histogram()] == [2, 2, 2]
    assert model.accelkit_details["layers_saved_measured"] == pytest.approx(1 - (2 * 1 + 2 * 2 + 2 * 4) / (6 * 4))


def test_calibration_keeps_mean_quality_within_the_budget_on_its_rows():
    full, model = _routed()
    calib = _calib()
    result = calibrate_router(model, calib, RoutedDepthConfig(max_quality_drop=0.1, folds=4))
    # re-run the calibrated model: the routed rows' cosine to the full model, averaged with the rest
    cos = []
    for b in calib:
        a, r = _pooled(model(**b), b["attention_mask"]), _pooled(full(**b).last_hidden_state, b["attention_mask"])
        cos.append(torch.nn.functional.cosine_similarity(a, r))
    # thresholds were chosen on out-of-fold predictions and the router refitted on all rows, so the
    # in-sample quality is close to (not exactly) the calibrated figure
    assert result.quality >= 0.9
    assert torch.cat(cos).mean() >= 0.9 - 0.02
    assert len(result.curve) >= 2 and result.curve[0]["layers_saved"] <= result.curve[-1]["layers_saved"]


def test_a_loose_budget_sends_every_row_to_the_cheapest_path():
    full, model = _routed()
    result = calibrate_router(model, _calib(), RoutedDepthConfig(max_quality_drop=1.0, folds=4))
    assert result.met_budget and result.layers_saved == pytest.approx(0.75)
    model.reset_stats()
    model(**bert_inputs())
    assert model.accelkit_details["layers_saved_measured"] == pytest.approx(0.75)


def test_an_unmeetable_budget_falls_back_to_the_full_model_and_says_so():
    full, model = _routed()
    result = calibrate_router(model, _calib(), RoutedDepthConfig(max_quality_drop=0.0, folds=4))
    assert not result.met_budget and result.thresholds == [None, None] and "runs in full" in result.message
    x = bert_inputs()
    assert torch.equal(model(**x), full(**x).last_hidden_state)


def test_save_and_load_give_the_same_routes_and_outputs(tmp_path):
    full, model = _routed()
    calibrate_router(model, _calib(), RoutedDepthConfig(max_quality_drop=0.2, folds=4))
    save_routed_depth(model, tmp_path / "routed")
    loaded = load_routed_depth(tmp_path / "routed", tiny_bert())
    x = bert_inputs(n=8, seed=9)
    assert loaded.thresholds == model.thresholds and loaded.depths == model.depths
    torch.testing.assert_close(loaded(**x), model(**x))
    assert loaded.route_histogram() == model.route_histogram()


def test_loading_an_incomplete_folder_is_a_schema_error(tmp_path):
    full, model = _routed()
    save_routed_depth(model, tmp_path / "routed")
    (tmp_path / "routed" / "path1.safetensors").unlink()
    with pytest.raises(SchemaError, match="path1.safetensors is missing"):
        load_routed_depth(tmp_path / "routed", tiny_bert())
    with pytest.raises(SchemaError, match="no routed_depth.json"):
        load_routed_depth(tmp_path / "elsewhere", tiny_bert())


def test_bad_setups_name_the_fix():
    full = tiny_bert()
    with pytest.raises(ConfigError, match="at least one cheaper model"):
        apply_routed_depth(full, [])
    with pytest.raises(ConfigError, match="fewer layers than the full model"):
        apply_routed_depth(full, [make_layer_student(full, (0, 1, 2, 3))])
    with pytest.raises(ConfigError, match="pass depths="):
        apply_routed_depth(torch.nn.Linear(2, 2), [torch.nn.Linear(2, 2)])
    with pytest.raises(ConfigError, match="pass features="):
        apply_routed_depth(torch.nn.Linear(2, 2), [torch.nn.Linear(2, 2)], depths=[1, 2])
    _, model = _routed()
    with pytest.raises(ConfigError, match="one per shallow path"):
        model.thresholds = [0.5]
    with pytest.raises(ConfigError, match="max_quality_drop"):
        RoutedDepthConfig(max_quality_drop=2.0)
    with pytest.raises(ConfigError, match="calibration rows"):
        calibrate_router(model, _calib(1), RoutedDepthConfig(folds=5))


def test_a_separate_router_set_fits_the_router_and_the_calibration_rows_only_set_thresholds():
    seen = []
    routers = []
    for seeds in ((0, 1), (5, 6)):
        _, model = _routed()
        batches = [bert_inputs(n=8, t=10, seed=s) for s in seeds]
        result = calibrate_router(model, batches, RoutedDepthConfig(max_quality_drop=0.1),
                                  router_batches=_calib(4), progress=lambda i, n: seen.append((i, n)))
        routers.append(model.router.weight.detach().clone())
        assert result.n_rows == 16 and result.quality >= 0.9
    torch.testing.assert_close(routers[0], routers[1])  # the router never saw the calibration rows
    assert seen[-1] == (6, 6)  # progress over calibration + router batches


def test_the_minilm_variant_is_registered_as_expensive_and_fits_the_router_on_unseen_sentences():
    from accelkit.techniques.routed_depth import (
        ROUTED_DEPTH_PRESETS,
        ROUTED_STUDENTS,
        router_calibration_data,
    )
    from accelkit.variants import get_technique
    from accelkit.workloads.minilm import MiniLMWorkload, stdlib_docstring_sentences

    assert get_technique("routed-depth").expensive
    assert get_technique("routed-depth").applies_to(MiniLMWorkload())
    assert set(ROUTED_DEPTH_PRESETS) == {"sentence-embedding"}  # chosen by what a workload offers, not its name
    wl = MiniLMWorkload()
    held_out = router_calibration_data(wl, ROUTED_STUDENTS)
    trained_on = set(wl.calib_data(max(s.train_sentences for s in ROUTED_STUDENTS))) | set(stdlib_docstring_sentences())
    # thresholds are chosen on calibration sentences no student trained on, never on evaluation ones
    assert held_out and not set(held_out) & trained_on and not set(held_out) & set(wl.eval_data())
    with pytest.raises(ConfigError, match="train_sentences"):
        router_calibration_data(wl, (SentenceDistillConfig(keep_layers=(0,)),))


def test_a_confidence_margin_never_saves_more_and_keeps_the_bound():
    calib = _calib()
    saved = []
    for sigmas in (0.0, 2.0):
        _, model = _routed()
        result = calibrate_router(model, calib, RoutedDepthConfig(max_quality_drop=0.1, margin_sigmas=sigmas, folds=4))
        assert result.quality - sigmas * result.quality_se >= 0.9
        saved.append(result.layers_saved)
    assert saved[1] <= saved[0]
    _, model = _routed()
    result = calibrate_router(model, calib, RoutedDepthConfig(max_quality_drop=0.1, validate_folds=3, folds=4))
    assert result.selection_optimism >= 0 and result.quality - result.selection_optimism >= 0.9
    assert result.layers_saved <= saved[0]
    with pytest.raises(ConfigError, match="margin_sigmas"):
        RoutedDepthConfig(margin_sigmas=-1)
    with pytest.raises(ConfigError, match="validate_folds"):
        RoutedDepthConfig(validate_folds=1)


@pytest.mark.slow
def test_minilm_routed_depth_saves_a_quarter_of_the_layers_at_cosine_098():
    # trains three students the first time (about two hours on one thread), then runs from the cache
    from accelkit.bench import bench

    base, routed = bench("minilm", ["routed-depth"], batch_size=32, repeats=1, roofline=False).variants
    assert routed.error is None
    # measured 0.9804 at 26.4% on the 512 evaluation sentences (BENCHMARKS.md): a thin margin
    assert routed.quality["cosine_mean"] >= 0.98
    assert routed.details["layers_saved_measured"] >= 0.25
    assert routed.details["calibration"]["met_budget"]


def test_a_routed_depth_file_entry_outside_its_folder_is_refused(tmp_path):
    import json

    full, model = _routed()
    save_routed_depth(model, tmp_path / "routed")
    meta_file = tmp_path / "routed" / "routed_depth.json"
    meta = json.loads(meta_file.read_text())
    (tmp_path / "outside.safetensors").write_bytes((tmp_path / "routed" / meta["paths"][0]["file"]).read_bytes())
    meta["paths"][0]["file"] = "../outside.safetensors"
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(SchemaError, match="points outside"):
        load_routed_depth(tmp_path / "routed", tiny_bert())
    meta_file.write_text("{not json")
    with pytest.raises(SchemaError, match="not valid JSON"):
        load_routed_depth(tmp_path / "routed", tiny_bert())
