import pytest
import torch

from accelkit.errors import ConfigError, UnknownVariantError
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


def test_large_gpt_mini_task_has_the_documented_shape_and_windows_of_its_length():
    from accelkit.train.tasks import GPT_MINI_SIZES, get_training_task

    task = get_training_task("gpt-mini", size="large")
    cfg = task.model.config
    assert {k: getattr(cfg, k) for k in GPT_MINI_SIZES["large"]} == GPT_MINI_SIZES["large"]
    assert len(task.model.blocks) == 6 and task.model.lm_head.in_features == 512
    x, y = task.dataset.tensors
    assert x.shape[1] == cfg.block_size and torch.equal(x[:, 1:], y[:, :-1])  # next-byte targets
    assert get_training_task("gpt-mini", size="large", width=256).model.config.n_embd == 256
    assert get_training_task("gpt-mini").model.config.n_embd == 128  # the default stays the workload's own


def test_bad_size_or_threads_raise_config_error_and_leave_torch_threads_as_they_were():
    from accelkit.train.tasks import get_training_task

    with pytest.raises(ConfigError, match="size='huge'"):
        get_training_task("gpt-mini", size="huge")
    with pytest.raises(ConfigError, match="gpt-mini only"):
        get_training_task("digits", size="large")
    with pytest.raises(ConfigError, match="threads=0"):
        bench_train_variants("gpt-mini", ["bf16"], threads=0)
    before = torch.get_num_threads()
    with pytest.raises(ConfigError, match="size='huge'"):  # raised after the thread count was changed
        bench_train_variants("gpt-mini", ["bf16"], size="huge", threads=before + 1)
    assert torch.get_num_threads() == before


@pytest.mark.slow  # an inductor compile of a fwd+bwd: ~30 s on the shared box
def test_compiled_forward_with_math_attention_matches_eager_values_and_gradients():
    from accelkit.train.bench import _compile_forward
    from accelkit.workloads.gpt_mini import GPTConfig, GPTMini

    torch.manual_seed(0)
    model = GPTMini(GPTConfig(block_size=16, n_layer=1, n_head=2, n_embd=32))
    idx = torch.randint(0, 256, (2, 16))
    eager = model(idx)
    eager.square().mean().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    compiled = _compile_forward(model)(idx)
    compiled.square().mean().backward()
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)  # fp32: same math, other fusion order
    for got, want in zip((p.grad for p in model.parameters()), grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-6)


def test_mfu_peak_is_the_higher_of_two_roofline_measurements_per_dtype():
    from accelkit.measure.roofline import Roofline

    busy, quiet = Roofline(50.0, 210.0, None, 1024, 1), Roofline(80.0, 190.0, None, 1024, 1)
    best = busy.best(quiet)  # what the training bench takes its MFU against
    assert (best.fp32_gflops, best.bf16_gflops, best.int8_gops) == (80.0, 210.0, None)
    assert best.fraction(40e9, 1.0, "fp32") == 0.5  # MFU is taken against the higher ceiling


def test_all_skips_emulated_fp16_on_a_cpu_without_native_fp16(monkeypatch):
    import accelkit.hardware as hw

    real = hw.probe()
    for native, expect in ((False, False), (True, True)):
        fake = {**real, "recommend": {**real["recommend"], "fp16_on_cpu": native}}
        monkeypatch.setattr(hw, "probe", lambda fake=fake: fake)
        assert ("fp16" in list_train_variants("gpt-mini", runnable_only=True)) is expect
    assert "fp16" in list_train_variants("gpt-mini")  # still there to ask for by name


def test_bf16_weights_train_in_bf16_and_land_near_fp32_after_equal_steps():
    import copy

    from accelkit.train.bench import TRAIN_VARIANTS, TrainVariant, _batches, _make_step
    from accelkit.train.tasks import get_training_task

    assert TRAIN_VARIANTS["bf16-weights+compile+fused"].bf16_weights
    task = get_training_task("digits", width=8)
    losses = {}
    for name, variant in {"fp32": TrainVariant(), "bf16w": TrainVariant(precision="bf16", fused=True,
                                                                       bf16_weights=True)}.items():
        model = copy.deepcopy(task.model)
        step = _make_step(model, task.loss_fn, variant, lr=3e-3)
        stream = _batches(task.dataset, 64, seed=1)
        first = [step(*next(stream)) for _ in range(40)][0]
        losses[name] = task.evaluate(copy.deepcopy(model).float())["val_loss"]
        assert losses[name] < 0.7 * first  # it learned
        if variant.bf16_weights:  # the weights themselves are bf16, not an autocast copy
            assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert abs(losses["bf16w"] - losses["fp32"]) < 0.1 * losses["fp32"]
