"""``accelkit routed-depth`` builds through build_plan, as bench and optimize do: the preset's config with
the CLI's budget reaches the technique, which readies the model the report reads."""

from __future__ import annotations

import torch

import accelkit.techniques.routed_depth as routed_depth
from accelkit.cli import main


class _Routed(torch.nn.Module):
    """Stands in for a routed model: the full model on every input, no students distilled."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.thresholds = inner, [0.5]
        self.accelkit_details = {"route_histogram": [{"path": "full", "rows": 1}], "layers_saved_measured": 0.0}

    def forward(self, *args, **kwargs):
        return self.inner(*args, **kwargs)

    reset_calls = 0

    def reset_stats(self):
        self.reset_calls += 1


def test_routed_depth_cli_builds_the_technique_with_the_presets_config_and_budget(monkeypatch, minilm_model):
    # minilm_model: transformers sets up its logging outside the command's quiet block (a handler
    # made inside would keep the test's stream after the test); the output goes to pytest's capture
    seen = {}

    def fake_build(model, workload, students, config, **kw):
        seen.update(config=config, students=students, kw=kw)
        seen["routed"] = _Routed(model)
        return seen["routed"]

    monkeypatch.setattr(routed_depth, "build_routed_depth", fake_build)
    monkeypatch.setattr("accelkit.workloads.minilm.MiniLMWorkload.eval_data", lambda self, limit=None: ["a b c"] * 4)
    try:
        main(["routed-depth", "--budget", "0.03"])
    except SystemExit as exc:
        assert exc.code == 0
    preset = routed_depth.ROUTED_DEPTH_PRESETS["sentence-embedding"]
    assert seen["config"] == routed_depth.RoutedDepthConfig.from_dict({**preset["config"].to_dict(),
                                                                       "max_quality_drop": 0.03})
    assert seen["students"] == preset["students"] and seen["kw"]["batch_size"] == preset["batch_size"]
    assert seen["kw"]["router_sentences"] == preset.get("router_sentences")
    assert seen["routed"].reset_calls == 1  # the technique reset its routing counts before the report
