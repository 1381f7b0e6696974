import pytest

from accelkit.bench import bench
from accelkit.errors import DeviceUnavailableError, UnknownVariantError
from accelkit.report.results import Results, load_results, save_results


@pytest.fixture(scope="module")
def minilm_results(minilm_workload, minilm_model):
    return bench(minilm_workload, ["fixed-length", "bf16"], limit=32, repeats=2, warmup=0,
                 baseline_model=minilm_model, max_quality_drop=0.01, roofline=False)


def test_bench_measures_every_variant_beside_the_baseline(minilm_results):
    names = [v.name for v in minilm_results.variants]
    assert names == ["default", "fixed-length", "bf16"]
    assert minilm_results.baseline == "default"
    for v in minilm_results.variants:
        assert v.error is None
        assert len(v.pair_ratios) == 2
        assert v.throughput > 0 and v.latency_ms["p50"] > 0
    fixed = minilm_results.variant("fixed-length")
    # the default is sentence-transformers' length-sorted dynamic padding: padding tokens are
    # masked, so the fixed-length reference gives the same embeddings for more work
    assert fixed.quality["cosine_min"] > 0.9999
    assert fixed.flops_per_item > minilm_results.variant("default").flops_per_item
    # the pydoc sentences fit the model's own maximum: nothing is truncated, and results say so
    data = minilm_results.settings["data"]
    assert data["max_length"] == 256 and data["truncated"] == 0 and data["items"] == 32
    bf16 = minilm_results.variant("bf16")
    assert bf16.quality["cosine_mean"] > 0.99 and bf16.meets_budget


def test_results_round_trip_through_json(minilm_results, tmp_path):
    path = save_results(minilm_results, tmp_path / "r.json")
    again = load_results(path)
    assert again.to_dict() == Results.from_dict(minilm_results.to_dict()).to_dict()
    assert again.schema == "accelkit.results/1"


def test_failing_variant_is_recorded_not_raised(digits_workload, digits_model):
    from accelkit.techniques.registry import register_technique, unregister_technique

    @register_technique("test-broken", group="precision", description="always fails")
    def _broken(model, ctx):
        raise RuntimeError("kernel missing")

    try:
        res = bench(digits_workload, ["test-broken", "bf16"], limit=64, repeats=1, warmup=0,
                    baseline_model=digits_model, roofline=False)
    finally:
        unregister_technique("test-broken")
    assert "kernel missing" in res.variant("test-broken").error
    assert res.variant("bf16").error is None


def test_bad_input_raises_specific_errors(digits_workload):
    with pytest.raises(UnknownVariantError):
        bench(digits_workload, ["no-such-variant"])
    with pytest.raises(UnknownVariantError):
        bench(digits_workload, ["dynamic-padding"])  # text-only technique
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailableError, match="--device cpu"):
            bench(digits_workload, ["bf16"], device="cuda")


def test_bench_judges_each_variant_once_and_records_its_plan(digits_workload, digits_model):
    from accelkit.bench import SearchOptions
    from accelkit.techniques.registry import register_technique, unregister_technique

    @register_technique("test-broken-2", group="precision", description="always fails")
    def _broken(model, ctx):
        raise RuntimeError("kernel missing")

    try:
        res = bench(digits_workload, ["test-broken-2", "bf16"], limit=64, repeats=1, warmup=0, memory=False,
                    flops=False, baseline_model=digits_model, roofline=False, max_quality_drop=0.5,
                    search=SearchOptions(split="calib"))
    finally:
        unregister_technique("test-broken-2")
    broken, bf16 = res.variant("test-broken-2"), res.variant("bf16")
    assert broken.verdict.rejection == "failed" and broken.verdict.status.startswith("failed: RuntimeError")
    assert broken.meets_budget is None  # a failure has no budget verdict in the table
    assert bf16.verdict.within_budget and bf16.meets_budget is True
    assert bf16.plan == [{"technique": "bf16", "config": {}}] and res.variant("default").plan == []
    assert res.settings["split"] == "calib"


def test_search_options_refuse_an_unknown_split():
    from accelkit.bench import SearchOptions
    from accelkit.errors import ConfigError

    with pytest.raises(ConfigError, match="split='test'"):
        SearchOptions(split="test")
