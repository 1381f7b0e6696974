"""Training techniques as registered descriptors (accelkit.train.techniques): every technique keeps
the registry's contract, plans compose or are refused with one line, and the bench's variants are
the same steps they were as hand-written flags."""

from __future__ import annotations

import pytest

from accelkit.errors import ConfigError, UnknownVariantError
from accelkit.train.techniques import (
    TrainVariant,
    build_train_variant,
    composition_error,
    get_training_technique,
    list_training_techniques,
    register_training_technique,
)
from accelkit.train.techniques.registry import TRAINING_NEEDS

# the variants as TRAIN_VARIANTS wrote them before they were plans: bench output must not change
_FLAGS = {
    "fp32": TrainVariant(),
    "bf16": TrainVariant(precision="bf16"),
    "fp16": TrainVariant(precision="fp16"),
    "fused": TrainVariant(fused=True),
    "compile": TrainVariant(compile=True),
    "channels-last": TrainVariant(channels_last=True),
    "bf16+compile+fused": TrainVariant(precision="bf16", compile=True, fused=True),
    "bf16-weights+compile+fused": TrainVariant(precision="bf16", compile=True, fused=True, bf16_weights=True),
    "grouped": TrainVariant(group_by_length=True),
    "bf16+compile+fused+grouped": TrainVariant(precision="bf16", compile=True, fused=True, group_by_length=True),
    "bf16-weights+compile+fused+grouped": TrainVariant(precision="bf16", compile=True, fused=True, bf16_weights=True,
                                                       group_by_length=True),
    # added with packed-dropout (it had no hand-written flags before)
    "bf16+compile+fused+grouped+packed-dropout": TrainVariant(precision="bf16", compile=True, fused=True,
                                                              group_by_length=True, packed_dropout=True),
}


def test_the_bench_variants_are_the_plans_of_the_same_steps():
    from accelkit.train.bench import (
        TRAIN_PLANS,
        TRAIN_VARIANTS,
        list_model_train_variants,
        list_train_variants,
    )

    assert TRAIN_VARIANTS == _FLAGS and list(TRAIN_PLANS) == list(_FLAGS)
    assert "channels-last" in list_train_variants("digits") and "channels-last" not in list_train_variants("gpt-mini")
    assert "grouped" not in list_train_variants("gpt-mini") and "grouped" in list_model_train_variants()


@pytest.mark.parametrize("name", list_training_techniques())
def test_every_technique_keeps_the_registry_contract(name):
    tech = get_training_technique(name)
    assert tech.description and tech.group and set(tech.needs) <= set(TRAINING_NEEDS)
    config = tech.config()
    assert type(config).from_dict(config.to_dict()) == config  # sits in results.json as a dict
    plan = [*tech.requires, name]
    variant = build_train_variant(plan)
    assert isinstance(variant, TrainVariant) and variant != TrainVariant()  # it changes how a step runs
    assert build_train_variant(plan) == variant  # the same plan gives the same step
    for other in list_training_techniques():
        assert tech.composes_with(get_training_technique(other)) == get_training_technique(other).composes_with(tech)
    assert tech.to_dict()["name"] == name


def test_plans_that_do_not_compose_are_one_line():
    assert composition_error(["autocast", "compile", "fused-adamw"]) is None
    fp16 = {"technique": "autocast", "config": {"dtype": "fp16"}}
    assert "both precision techniques" in composition_error(["autocast", fp16])
    with pytest.raises(ConfigError, match="bf16-weights needs autocast before it"):
        build_train_variant(["bf16-weights", "autocast"])
    with pytest.raises(ConfigError, match="not fp16"):
        build_train_variant([fp16, "bf16-weights"])
    with pytest.raises(ConfigError, match="dtype='fp8'"):
        build_train_variant([{"technique": "autocast", "config": {"dtype": "fp8"}}])
    with pytest.raises(UnknownVariantError, match="'lora'"):
        build_train_variant(["lora"])


def test_a_name_registered_twice_is_an_error():
    from accelkit.train.techniques.compile import CompileConfig

    with pytest.raises(ConfigError, match="registered twice"):
        register_training_technique("compile", group="x", description="y", config=CompileConfig)(lambda v, c: v)
    with pytest.raises(ConfigError, match="needs"):
        register_training_technique("new", group="x", description="y", config=CompileConfig, needs=("gpu",))
