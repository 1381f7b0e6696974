import json

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from train_testkit import make_model

from accelkit.train import (
    TrainConfig,
    TrainingDivergedError,
    latest_checkpoint,
    load_checkpoint,
    train,
)


def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _cfg(**kw):
    base = dict(micro_batch_size=32, lr=3e-3, epochs=1, progress=False, seed=1)
    base.update(kw)
    return TrainConfig(**base)


def test_fp32_learns_and_logs_one_jsonl_record_per_step(digits_dataset, tmp_path):
    result = train(make_model(), digits_dataset, F.cross_entropy, _cfg(epochs=3, output_dir=str(tmp_path), warmup_steps=2))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert result.total_steps == result.steps_done == 3 * 512 // 32 == len(records)
    assert [r["step"] for r in records] == list(range(1, 49))
    assert {"loss", "lr", "samples_per_s", "epoch", "skipped"} <= set(records[0])
    assert records[0]["lr"] == pytest.approx(3e-3 / 2)  # warm-up step 1 of 2
    assert result.final_loss < 0.5 * result.losses[0]


def test_accumulation_matches_one_big_batch_and_reports_scaled_lr(digits_dataset):
    big, small = make_model(), make_model()
    r_big = train(big, digits_dataset, F.cross_entropy, _cfg(micro_batch_size=64, lr_scaling="none"))
    r_acc = train(small, digits_dataset, F.cross_entropy, _cfg(micro_batch_size=16, target_batch_size=64, lr_scaling="none"))
    assert r_acc.accumulation_steps == 4 and r_acc.effective_batch_size == 64 == r_big.effective_batch_size
    for k, v in _params(big).items():
        torch.testing.assert_close(_params(small)[k], v, rtol=1e-4, atol=1e-5)
    scaled = train(make_model(), digits_dataset, F.cross_entropy, _cfg(micro_batch_size=16, target_batch_size=64, base_batch_size=16, max_steps=1))
    assert scaled.lr == pytest.approx(4 * 3e-3) and scaled.base_lr == 3e-3 and scaled.lr_scaling == "linear"


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_tracks_fp32_and_keeps_fp32_weights(digits_dataset, precision):
    ref = train(make_model(), digits_dataset, F.cross_entropy, _cfg(epochs=2))
    model = make_model()
    low = train(model, digits_dataset, F.cross_entropy, _cfg(epochs=2, precision=precision))
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast, not a half model
    assert low.skipped_steps == 0
    # same data order and init: the loss curves agree to 16-bit rounding
    assert abs(low.final_loss - ref.final_loss) < 0.05 * ref.final_loss


def test_fp16_overflow_step_is_skipped_and_counted(digits_dataset, tmp_path):
    calls = {"n": 0}

    def loss_with_overflow(logits, target):
        calls["n"] += 1
        loss = F.cross_entropy(logits, target)
        return loss * float("inf") if calls["n"] == 3 else loss

    snapshots = []
    model = make_model()
    result = train(model, digits_dataset, loss_with_overflow, _cfg(precision="fp16", max_steps=5, output_dir=str(tmp_path)),
                   on_step=lambda rec: snapshots.append(_params(model)))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert result.skipped_steps == 1 and [r["skipped"] for r in records] == [False, False, True, False, False]
    assert records[2]["loss_scale"] == records[1]["loss_scale"] / 2  # 65536 -> 32768
    for k in snapshots[1]:  # the skipped step left the weights alone
        assert torch.equal(snapshots[1][k], snapshots[2][k])


def test_nonfinite_loss_without_scaler_stops_with_last_good_checkpoint(digits_dataset, tmp_path):
    calls = {"n": 0}

    def loss_goes_nan(logits, target):
        calls["n"] += 1
        loss = F.cross_entropy(logits, target)
        return loss * float("nan") if calls["n"] > 4 else loss

    config = _cfg(max_steps=16, checkpoint_every=2, output_dir=str(tmp_path), max_nonfinite_steps=3)
    with pytest.raises(TrainingDivergedError, match="non-finite for 3 steps") as info:
        train(make_model(), digits_dataset, loss_goes_nan, config)
    latest = latest_checkpoint(tmp_path / "checkpoints")
    assert latest is not None and latest.name == "step-00000004" and str(latest) in str(info.value)
    model = make_model(seed=5)
    load_checkpoint(latest, model)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_speed_switches_keep_the_numbers(digits_dataset):
    """channels-last, fused/foreach AdamW and torch.compile (eager backend here; inductor in the
    slow test) change how the step runs, not what it computes."""
    ref_model = make_model()
    ref = train(ref_model, DataLoader(digits_dataset, batch_size=7), F.cross_entropy, _cfg(optimizer_impl="for-loop"))
    for switches in ({"channels_last": True}, {"optimizer_impl": "fused"}, {"optimizer_impl": "foreach"},
                     {"compile": True, "compile_backend": "eager"}):
        model = make_model()
        result = train(model, digits_dataset, F.cross_entropy, _cfg(**switches))
        assert result.losses == pytest.approx(ref.losses, rel=1e-4), switches
        for k, v in _params(ref_model).items():
            torch.testing.assert_close(_params(model)[k], v, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_inductor_compile_matches_eager(digits_dataset):
    ref = train(make_model(), digits_dataset, F.cross_entropy, _cfg())
    compiled = train(make_model(), digits_dataset, F.cross_entropy, _cfg(compile=True, precision="fp32"))
    assert compiled.losses == pytest.approx(ref.losses, rel=1e-3)


def test_progress_bar_renders_loss_and_rate(digits_dataset, capsys):
    result = train(make_model(), digits_dataset, F.cross_entropy, _cfg(max_steps=3, progress=True))
    out = capsys.readouterr().out
    assert result.steps_done == 3 and "3/3" in out and "samples/s" in out and "loss" in out


def test_too_small_dataset_is_a_config_error(digits_dataset):
    from accelkit.errors import ConfigError

    with pytest.raises(ConfigError, match="fewer than one optimizer step"):
        train(make_model(), digits_dataset, F.cross_entropy, _cfg(micro_batch_size=512, target_batch_size=1024))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: fp16 GradScaler and bf16 autocast on GPU")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_mixed_precision_converges(digits_dataset, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    model = make_model()
    result = train(model, digits_dataset, F.cross_entropy, _cfg(epochs=3, precision=precision, device="cuda"))
    assert next(model.parameters()).is_cuda and all(p.dtype == torch.float32 for p in model.parameters())
    assert result.final_loss < 0.5 * result.losses[0]
