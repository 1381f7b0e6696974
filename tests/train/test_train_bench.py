import pytest

from accelkit.errors import UnknownVariantError
from accelkit.report.results import Results
from accelkit.train.bench import bench_train_variants, list_train_variants


@pytest.mark.slow  # imports dynamo + sklearn and measures a roofline: ~20 s on the shared box
def test_training_variants_train_equal_steps_and_report_in_the_results_schema():
    results = bench_train_variants("digits", ["bf16", "channels-last"], batch_size=64, steps_per_call=1, repeats=2,
                                   warmup=1, width=8, roofline_size=256)
    names = [v.name for v in results.variants]
    assert names == ["fp32", "bf16", "channels-last"] and results.task == "train" and results.baseline == "fp32"
    assert {v.details["steps_trained"] for v in results.variants} == {3}  # warm-up + 2 rounds, 1 step each
    fp32, bf16, cl = results.variants
    assert fp32.speedup == 1.0 and bf16.speedup > 0 and fp32.throughput_unit == "samples/s"
    assert abs(bf16.quality_drop) < 0.05 * fp32.quality["val_loss"]  # bf16 rounding, same batches
    assert abs(cl.quality_drop) < 1e-3 * fp32.quality["val_loss"]  # a layout change computes the same thing
    assert fp32.roofline_fraction is not None and 0 < fp32.roofline_fraction < 1
    assert Results.from_dict(results.to_dict()).variant("bf16").quality == bf16.quality


def test_unknown_training_variant():
    assert "channels-last" not in list_train_variants("gpt-mini")
    with pytest.raises(UnknownVariantError, match="channels-last"):
        bench_train_variants("gpt-mini", ["channels-last"])
