import math

import pytest

from accelkit.errors import ConfigError
from accelkit.train import TrainConfig, lr_at_step


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"precision": "fp8"}, "precision='fp8'"),
        ({"micro_batch_size": 0}, "micro_batch_size=0"),
        ({"lr": float("nan")}, "lr=nan"),
        ({"grad_clip_norm": -1.0}, "grad_clip_norm=-1.0"),
        ({"optimizer_impl": "turbo"}, "optimizer_impl='turbo'"),
        ({"resume": True}, "output_dir"),
    ],
)
def test_bad_fields_raise_config_error_quoting_the_value(kwargs, needle):
    with pytest.raises(ConfigError, match=None) as info:
        TrainConfig(**kwargs)
    assert needle in str(info.value)


def test_target_batch_must_be_a_multiple_of_micro_times_world():
    config = TrainConfig(micro_batch_size=24, target_batch_size=64)
    with pytest.raises(ConfigError, match="not a multiple"):
        config.accumulation_steps()
    assert TrainConfig(micro_batch_size=16, target_batch_size=64).accumulation_steps(world_size=2) == 2


def test_lr_scaling_rules():
    linear = TrainConfig(lr=0.1, micro_batch_size=32, target_batch_size=256, base_batch_size=64)
    sqrt = TrainConfig(lr=0.1, micro_batch_size=32, target_batch_size=256, base_batch_size=64, lr_scaling="sqrt")
    none = TrainConfig(lr=0.1, micro_batch_size=32, target_batch_size=256, base_batch_size=64, lr_scaling="none")
    assert linear.scaled_lr() == pytest.approx(0.4)
    assert sqrt.scaled_lr() == pytest.approx(0.2)
    assert none.scaled_lr() == pytest.approx(0.1)


def test_round_trip_and_unknown_field():
    config = TrainConfig(precision="bf16", betas=(0.8, 0.9), target_batch_size=64)
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="no field"):
        TrainConfig.from_dict({"precison": "bf16"})


def test_warmup_then_cosine_to_floor():
    lrs = [lr_at_step(s, peak_lr=1.0, total_steps=20, warmup_steps=4, min_lr_ratio=0.1) for s in range(21)]
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False))  # monotone decay after warm-up
    assert lrs[20] == pytest.approx(0.1)
    assert lrs[12] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_warmup_cosine_factor_warms_up_over_a_tenth_then_decays_to_zero():
    from accelkit.train.schedule import warmup_cosine_factor

    f = [warmup_cosine_factor(s, 100) for s in range(101)]
    assert f[0] == pytest.approx(0.1 * 0.5 * (1 + math.cos(0)))  # 1/10 of the way through the warm-up
    assert max(f) == f[9] and 0.97 < f[9] < 1.0  # warm-up ends at step 9; the cosine has already begun
    assert all(a >= b for a, b in zip(f[9:], f[10:], strict=False)) and f[100] == pytest.approx(0.0)
