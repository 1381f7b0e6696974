"""parallel-streams: the same ONNX graph served from several sessions, each on a slice of the batch."""

from __future__ import annotations

import pytest
import torch

from accelkit.errors import ConfigError
from accelkit.optimize.plans import Plan, extend_plans
from accelkit.variants import build_variant


def test_streams_give_the_single_session_outputs(digits_workload, digits_model, monkeypatch):
    monkeypatch.setenv("ACCELKIT_THREADS", "2")
    settings = digits_workload.default_settings(64)
    one = build_variant("onnx", digits_model, settings, digits_workload)
    two = build_variant("onnx+parallel-streams", digits_model, settings, digits_workload)
    assert two.details["streams"] == 2 and two.model.config.streams == 2
    data = digits_workload.eval_data(100)  # 64 + 36: uneven slices, and a last batch of 36
    torch.testing.assert_close(digits_workload.predict(two.model, data, two.settings),
                               digits_workload.predict(one.model, data, one.settings), rtol=1e-5, atol=1e-5)
    assert len(two.model(torch.zeros(1, 1, 8, 8))) == 1  # a batch smaller than the streams: one session


def test_streams_apply_only_to_a_runtime_session(digits_workload, digits_model, monkeypatch):
    monkeypatch.setenv("ACCELKIT_THREADS", "2")
    with pytest.raises(ConfigError, match="put a runtime step"):
        build_variant("parallel-streams", digits_model, digits_workload.default_settings(), digits_workload)
    # the search composes it after a step that builds an ORT session, never alone or after a cast
    plans, _ = extend_plans([Plan(("onnx",)), Plan(("bf16",))], ["onnx", "bf16", "parallel-streams"], "throughput")
    assert [p.name for p in plans] == ["onnx+parallel-streams"]
