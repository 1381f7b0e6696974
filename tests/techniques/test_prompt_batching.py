"""prompt-batching: the doubling search over batch sizes (a fake clock), the size it keeps on a
tiny random Llama, replaying a saved size, and its place in plans (throughput only, after a runtime)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from accelkit.errors import ConfigError
from accelkit.techniques.prompt_batching import PromptBatchingConfig, find_prompt_batch
from accelkit.techniques.registry import build_plan, composition_problem, get_technique
from accelkit.workloads import workload_from_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import model_folders as mf  # noqa: E402


def clock(seconds_at: dict[int, float], calls: list | None = None):
    """A pass's seconds by batch size (for any count of prompts), RuntimeError for a size not listed."""
    def time_pass(size: int, n: int) -> float:
        if calls is not None:
            calls.append((size, n))
        if size not in seconds_at:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory")
        return seconds_at[size]
    return time_pass


def test_doubles_while_a_doubling_pays_and_stops_at_the_first_that_does_not():
    size, relative, stopped = find_prompt_batch(clock({8: 4.0, 16: 2.5, 32: 2.0, 64: 1.95}), 8, 64)
    # 32 is 1.25x faster than 16; 64 only 1.03x faster than 32: not worth its latency and memory
    assert size == 32 and relative == {8: 1.0, 16: 0.625, 32: 0.5, 64: 0.4875}
    assert "batch 64" in stopped and "under 1.1x" in stopped


def test_a_size_that_fails_ends_the_search_and_the_limit_is_kept():
    calls: list = []
    size, relative, stopped = find_prompt_batch(clock({4: 2.0, 8: 1.0}, calls), 4, 64)
    assert size == 8 and (16, 16) in calls and not [c for c in calls if c[0] == 32]
    assert "batch 16 failed: RuntimeError" in stopped
    size, _, stopped = find_prompt_batch(clock({4: 4.0, 8: 2.0, 16: 1.0, 32: 0.5}), 4, 16)
    assert size == 16 and stopped.startswith("reached 16")
    # a start already at the limit tries nothing
    assert find_prompt_batch(clock({}), 8, 8)[0] == 8


def test_each_comparison_takes_the_median_of_interleaved_pairs_over_the_doubled_count():
    calls: list = []
    find_prompt_batch(clock({8: 2.0, 16: 1.0, 32: 0.8}, calls), 8, 32, rounds=3)
    # one untimed pass of the new size, then (old, new) pairs, each over as many prompts as the new size
    assert calls == [(16, 16), (8, 16), (16, 16), (8, 16), (16, 16), (8, 16), (16, 16),
                     (32, 32), (16, 32), (32, 32), (16, 32), (32, 32), (16, 32), (32, 32)]


@pytest.mark.parametrize(("field", "value"), [("max_batch_size", 0), ("rounds", 0), ("batch_size", 0),
                                                ("min_gain", 0.9), ("batch_size", True)])
def test_bad_settings_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        PromptBatchingConfig(**{field: value})


def test_it_helps_throughput_only_and_goes_after_a_runtime():
    tech = get_technique("prompt-batching")
    assert tech.group == "serving" and set(tech.objectives) == {"throughput"} and "generate" in tech.needs
    assert composition_problem(("prompt-batching",), objective="latency", search=True) is not None
    assert composition_problem(("openvino-generate", "prompt-batching"), objective="throughput", search=True) is None
    assert composition_problem(("prompt-batching", "openvino-generate"), objective="throughput",
                               search=True) is not None


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    root = tmp_path_factory.mktemp("batching")
    return workload_from_model(mf.llama_folder(root), mf.prompts_file(root, 16), task="text-generation",
                               max_new_tokens=4)


def test_on_a_model_it_keeps_a_measured_size_and_the_tokens(llama):
    from accelkit.bench import bench

    res = bench(llama, ["prompt-batching"], batch_size=2, repeats=1, keep_built=True, roofline=False, flops=False)
    built = res.built["prompt-batching"]
    details = res.variant("prompt-batching").details
    assert built.settings.batch_size == details["batch_size"] in (2, 4, 8)
    assert details["pass_time_vs_start"]["2"] == 1.0 and details["stopped"]
    # the plan replays the size it chose without timing again
    assert built.configs[0]["batch_size"] == details["batch_size"]
    # left padding over more rows leaves the tiny model's greedy tokens as they were
    assert res.variant("prompt-batching").quality["greedy_agreement"] == 1.0


def test_a_saved_size_is_replayed_without_timing(llama, monkeypatch):
    import accelkit.techniques.prompt_batching as pb

    monkeypatch.setattr(pb, "find_prompt_batch", lambda *a, **k: pytest.fail("timed a replayed plan"))
    built = build_plan([{"technique": "prompt-batching", "config": {"batch_size": 6}}], llama.build_model(),
                       llama.default_settings(2), llama)
    assert built.settings.batch_size == 6


def test_the_cache_estimate_reads_the_models_config_and_caps_the_sizes(llama, monkeypatch):
    import types

    import accelkit.techniques.prompt_batching as pb
    from accelkit.bench import bench

    model = llama.build_model()
    c = model.config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    want = 2 * c.num_hidden_layers * (c.num_key_value_heads or c.num_attention_heads) * head_dim * 4 * 10
    assert pb.cache_bytes_per_row(model, 10) == want
    assert pb.cache_bytes_per_row(types.SimpleNamespace(model=model), 10) == want  # a runtime keeping .model
    assert pb.cache_bytes_per_row(object(), 10) is None
    # free memory for three rows' caches in the share: the doubling stops at 3 rows' worth (2)
    import psutil

    per_row = pb.cache_bytes_per_row(model, max(llama.token_lengths(llama.calib_data(64))) + 4)
    real = psutil.virtual_memory()
    monkeypatch.setattr(psutil, "virtual_memory",
                        lambda: types.SimpleNamespace(total=real.total, available=per_row * 3 / pb.MEMORY_SHARE))
    res = bench(llama, ["prompt-batching"], batch_size=1, repeats=1, roofline=False, flops=False, memory=False)
    details = res.variant("prompt-batching").details
    assert set(details["pass_time_vs_start"]) <= {"1", "2"} and "capped at 3 rows by the free memory" in details["stopped"]
