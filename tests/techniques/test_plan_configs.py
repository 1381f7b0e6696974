"""Plans carry configs: build_plan hands each step its validated Config, records what was applied,
and refuses an unknown key or a config for a technique that takes none; composition problems are typed."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from accelkit.config import Config
from accelkit.errors import ConfigError, UnknownVariantError
from accelkit.optimize.plans import Plan, extend_plans
from accelkit.techniques.registry import (
    Built,
    PlanStep,
    build_plan,
    composition_problem,
    plan_steps,
    register_technique,
    unregister_technique,
)
from accelkit.workloads import RunSettings


@dataclass
class _ScaleConfig(Config):
    factor: float = 2.0
    auto: bool = False
    version: int = 1

    def __post_init__(self) -> None:
        if self.factor <= 0:
            raise ConfigError(f"factor={self.factor}: expected > 0")


class _Scaled(torch.nn.Module):
    def __init__(self, model, factor):
        super().__init__()
        self.model, self.factor = model, factor

    def forward(self, x):
        return self.model(x) * self.factor


SEEN: list[_ScaleConfig] = []


@pytest.fixture()
def configured():
    @register_technique("scale-test", group="structure", description="scales outputs", config=_ScaleConfig)
    def _scale(model, ctx, config: _ScaleConfig):
        SEEN.append(config)
        # "auto" stands for a technique that tunes itself: it records the factor it chose
        factor = 3.0 if config.auto else config.factor
        chosen = _ScaleConfig(factor=factor).to_dict() if config.auto else None
        return Built(_Scaled(model, factor), ctx.settings, config=chosen)

    @register_technique("plain-test", group="precision", description="no config", accepts=("eager",))
    def _plain(model, ctx):
        return model, ctx.settings

    SEEN.clear()
    yield
    unregister_technique("scale-test")
    unregister_technique("plain-test")


def _build(plan, digits_model, digits_workload):
    return build_plan(plan, digits_model, RunSettings(batch_size=64), digits_workload)


def test_a_step_gets_its_config_validated_and_the_plan_records_it(configured, digits_model, digits_workload):
    built = _build([{"technique": "scale-test", "config": {"factor": 5.0}}, "plain-test"], digits_model,
                   digits_workload)
    assert SEEN[-1] == _ScaleConfig(factor=5.0) and built.model.factor == 5.0
    assert built.name == "scale-test+plain-test"
    assert built.plan == [{"technique": "scale-test", "config": {"factor": 5.0, "auto": False, "version": 1}},
                          {"technique": "plain-test", "config": {}}]


def test_empty_config_and_plain_names_mean_the_defaults(configured, digits_model, digits_workload):
    by_name = _build("scale-test+plain-test", digits_model, digits_workload)
    by_step = _build([PlanStep("scale-test", {}), "plain-test"], digits_model, digits_workload)
    assert by_name.model.factor == by_step.model.factor == 2.0
    assert by_name.plan == by_step.plan


def test_a_self_tuning_step_records_the_config_it_chose(configured, digits_model, digits_workload):
    built = _build([{"technique": "scale-test", "config": {"auto": True}}], digits_model, digits_workload)
    assert built.plan == [{"technique": "scale-test", "config": {"factor": 3.0, "auto": False, "version": 1}}]
    # replaying the recorded plan applies the same thing, without tuning again
    again = _build(built.plan, digits_model, digits_workload)
    assert again.model.factor == 3.0 and SEEN[-1].auto is False


def test_bad_configs_are_one_line_config_errors(configured, digits_model, digits_workload):
    with pytest.raises(ConfigError, match=r"scale-test.*\['factr'\].*known fields: \['auto', 'factor', 'version'\]"):
        _build([{"technique": "scale-test", "config": {"factr": 1}}], digits_model, digits_workload)
    with pytest.raises(ConfigError, match="factor=-1"):
        _build([{"technique": "scale-test", "config": {"factor": -1}}], digits_model, digits_workload)
    with pytest.raises(ConfigError, match=r"plain-test.*takes no config.*\['x'\]"):
        _build([{"technique": "plain-test", "config": {"x": 1}}], digits_model, digits_workload)
    with pytest.raises(ConfigError, match="unknown keys"):
        plan_steps([{"technique": "scale-test", "config": {}, "extra": 1}])
    with pytest.raises(UnknownVariantError, match="empty"):
        _build([], digits_model, digits_workload)


def test_the_built_plan_of_the_baseline_is_empty(digits_model, digits_workload):
    built = _build("default", digits_model, digits_workload)
    assert built.steps == () and built.plan == []


def test_composition_problems_are_typed_and_the_search_hides_only_its_own_shape(configured):
    order = composition_problem(("plain-test", "scale-test"), search=True)
    same = composition_problem(("scale-test", "scale-test"), search=True)
    assert order.kind == "group-order" and order.search_shape
    assert same.kind == "same-group" and same.search_shape
    assert composition_problem(("nope",)).kind == "unknown"
    _, ruled_out = extend_plans([Plan(("plain-test",))], ["scale-test"])
    assert ruled_out == {}  # group order shapes the search: not reported as an incompatibility


def test_dynamic_padding_takes_its_config_from_the_plan(minilm_workload, minilm_model, monkeypatch):
    monkeypatch.setattr(minilm_workload, "sorts_by_length", False)  # a plain tokenizer call: padding to trim
    settings = minilm_workload.default_settings(8)
    unsorted = build_plan([{"technique": "dynamic-padding", "config": {"sort_by_length": False}}], minilm_model,
                          settings, minilm_workload)
    assert unsorted.settings.padding == "dynamic" and unsorted.settings.sort_by_length is False
    assert unsorted.plan == [{"technique": "dynamic-padding", "config": {"sort_by_length": False, "version": 1}}]
    assert build_plan("dynamic-padding", minilm_model, settings, minilm_workload).settings.sort_by_length is True


def test_parallel_streams_records_the_streams_it_chose_and_replays_a_given_count(digits_model, digits_workload):
    from accelkit.techniques.registry import get_technique, unavailable_reason

    reason = unavailable_reason(get_technique("parallel-streams"))
    if reason:
        pytest.skip(reason)
    chosen = _build("onnx+parallel-streams", digits_model, digits_workload)
    streams = chosen.details["streams"]
    assert chosen.plan[-1] == {"technique": "parallel-streams", "config": {"streams": streams, "version": 1}}
    one = _build([*chosen.plan[:-1], {"technique": "parallel-streams", "config": {"streams": 1}}], digits_model,
                 digits_workload)
    assert one.details["streams"] == 1 and one.plan[-1]["config"]["streams"] == 1
