"""static-shapes: an OpenVINO model compiled once per batch shape, text padded to bucket lengths;
the outputs stay the float model's, each shape compiles once when its calls pay for it (or at
settle), past the limit the dynamic compile serves, and a shipped folder pads as the plan was
measured."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from accelkit.errors import ConfigError
from accelkit.saving import load, save
from accelkit.variants import build_variant
from accelkit.workloads.base import RunSettings
from accelkit.workloads.text import bucketed_length, pad_token_rows

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import model_folders as mf  # noqa: E402


def test_bucket_lengths_hold_the_row_within_a_tenth_and_are_few():
    lengths = [bucketed_length(n, 256) for n in range(1, 257)]
    assert all(b >= n for n, b in zip(range(1, 257), lengths, strict=True))
    assert all(b <= max(8, n + (n + 9) // 10) for n, b in zip(range(1, 257), lengths, strict=True) if b < 256)
    assert lengths == sorted(lengths) and len(set(lengths)) == 34 and lengths[-1] == 256
    assert bucketed_length(300, 256) == 300  # never shorter than the row: truncation happens before


def test_bucketed_padding_masks_the_extra_tokens():
    class Tok:
        padding_side, pad_token_id = "right", 0

    encoded = {"input_ids": [[5, 6, 7], list(range(5, 17))], "attention_mask": [[1] * 3, [1] * 12]}
    rows = pad_token_rows(Tok(), encoded, [0, 1], ("input_ids", "attention_mask"), bucket_cap=64)
    assert rows["input_ids"].shape == (2, 13)  # 12 tokens → the bucket of 13
    assert rows["attention_mask"].sum(1).tolist() == [3, 12]
    assert rows["input_ids"][1, :12].tolist() == encoded["input_ids"][1] and rows["input_ids"][1, 12] == 0
    assert pad_token_rows(Tok(), encoded, [0, 1], ("input_ids",), bucket_cap=12)["input_ids"].shape == (2, 12)


def test_bucketed_is_a_padding_setting_and_others_are_refused():
    assert RunSettings(padding="bucketed").padding == "bucketed"
    with pytest.raises(ConfigError, match="'fixed', 'dynamic' or 'bucketed'"):
        RunSettings(padding="buckets")


def test_static_shapes_keep_the_outputs_compile_once_per_shape_and_ship(tmp_path, monkeypatch):
    from accelkit.workloads import workload_from_model

    monkeypatch.setenv("ACCELKIT_THREADS", "1")
    wl = workload_from_model(mf.sentence_transformers_folder(tmp_path), mf.text_file(tmp_path, 60))
    model = wl.build_model()
    built = build_variant("openvino+static-shapes", model, wl.default_settings(8), wl)
    assert built.settings.padding == "bucketed" and built.settings.sort_by_length
    # the limit chosen for this graph's size is the plan's config, so a saved plan replays it
    from accelkit.techniques.static_shapes import default_max_shapes

    limit = default_max_shapes(built.model.serialized_size_bytes)
    assert built.plan[-1] == {"technique": "static-shapes", "config": {"max_shapes": limit, "version": 1}}
    texts = list(wl.eval_data(40))
    batches = [inputs for inputs, _ in wl.batches(texts, built.settings)]
    lengths = {b["input_ids"].shape[1] for b in batches}
    cap = min(built.settings.max_length, wl.model_max_length)
    assert all(n == bucketed_length(n, cap) for n in lengths) and len(lengths) > 1  # every batch at a bucket length
    out = wl.predict(built.model, texts, built.settings)
    float_out = wl.predict(model, texts, wl.default_settings(8))
    assert torch.nn.functional.cosine_similarity(out, float_out).min() > 0.9999
    shapes = {tuple(b["input_ids"].shape) for b in batches}
    extra = built.model.describe().extra
    assert extra["static_shapes_compiled"] == len(shapes) and extra["static_compile_s"] > 0
    wl.predict(built.model, texts, built.settings)  # again: no shape is compiled twice
    assert built.model.describe().extra["static_shapes_compiled"] == len(shapes)
    loaded = load(save(built, tmp_path / "model", workload=wl))
    assert loaded.settings.padding == "bucketed"
    again = torch.from_numpy(loaded.encode(texts, batch_size=8))
    assert torch.nn.functional.cosine_similarity(torch.nn.functional.normalize(out, dim=1), again).min() > 0.9999
    # a few sentences encoded once never pay for a compile (the first call has no time to go by)
    assert loaded.model.describe().extra["static_shapes_compiled"] < len(shapes)
    loaded.settle()  # a server after its warm-up call: every shape met gets its compile
    assert loaded.model.describe().extra["static_shapes_compiled"] == len(shapes)
    settled = torch.from_numpy(loaded.encode(texts, batch_size=8))
    assert torch.nn.functional.cosine_similarity(again, settled).min() > 0.9999


def test_encode_announces_its_batch_shapes_to_the_runtime(tmp_path, monkeypatch):
    import accelkit.runtimes.openvino as ov_runtime
    from accelkit.workloads import workload_from_model

    monkeypatch.setenv("ACCELKIT_THREADS", "1")
    wl = workload_from_model(mf.sentence_transformers_folder(tmp_path), mf.text_file(tmp_path, 60))
    built = build_variant("openvino+static-shapes", wl.build_model(), wl.default_settings(8), wl)
    loaded = load(save(built, tmp_path / "model", workload=wl))
    texts = list(wl.eval_data(40))
    shapes = {tuple(b["input_ids"].shape) for b, _ in wl.batches(texts, built.settings)}
    # any announced time pays (the rule's arithmetic is tested below), so the test reads no clock:
    # every shape but the first call's is compiled on meeting, which only the announcement allows
    monkeypatch.setattr(ov_runtime, "compile_pays", lambda spent, expected, compile_s: expected > 0)
    loaded.encode(texts, batch_size=8)
    assert len(shapes) >= 2
    assert loaded.model.describe().extra["static_shapes_compiled"] >= len(shapes) - 1


def test_a_compile_pays_when_the_time_spent_and_announced_covers_it():
    from accelkit.runtimes.openvino import compile_pays

    assert not compile_pays(0.0, 0.0, 0.5)  # nothing run and nothing announced: the dynamic compile serves
    assert not compile_pays(0.2, 0.0, 0.5, gain=0.15)  # saving 15% of 0.2 s does not buy a 0.5 s compile
    assert compile_pays(1.0, 3.0, 0.5, gain=0.15)  # 4 s of calls at 15% saved: 0.6 s > 0.5 s
    assert compile_pays(4.0, 0.0, 0.5, gain=0.15)  # calls never announced pay once enough time went by


def test_announced_calls_compile_a_shape_once_they_pay(digits_workload, digits_model, monkeypatch):
    from accelkit.techniques.static_shapes import StaticShapesConfig, apply_static_shapes

    monkeypatch.setenv("ACCELKIT_THREADS", "1")
    dynamic = build_variant("openvino", digits_model, digits_workload.default_settings(64), digits_workload).model
    static = apply_static_shapes(dynamic, StaticShapesConfig(max_shapes=4))
    x = torch.randn(16, 1, 8, 8)
    static(x)  # the first call of a process: no time per call known yet, so it runs dynamic
    assert static.describe().extra["static_shapes_compiled"] == 0
    import accelkit.runtimes.openvino as ov_runtime

    # the rule's arithmetic is tested above; here any announced time pays, so the test reads no clock
    monkeypatch.setattr(ov_runtime, "compile_pays", lambda spent, expected, compile_s: expected > 0)
    static.expect_calls([(16, 1, 8, 8)] * 3)  # a corpus of this shape is coming
    np.testing.assert_allclose(static(x).numpy(), dynamic(x).numpy(), rtol=1e-4, atol=1e-4)
    assert static.describe().extra["static_shapes_compiled"] == 1
    static(torch.randn(5, 1, 8, 8))  # met once, never announced: not yet paid for
    assert static.describe().extra["static_shapes_compiled"] == 1
    static.settle()
    assert static.describe().extra["static_shapes_compiled"] == 2
    static(torch.randn(7, 1, 8, 8))  # settled: a new shape compiles on meeting it, as in a long run
    assert static.describe().extra["static_shapes_compiled"] == 3


def test_a_shape_past_the_limit_runs_on_the_dynamic_compile(digits_workload, digits_model, monkeypatch):
    from accelkit.techniques.static_shapes import StaticShapesConfig, apply_static_shapes

    monkeypatch.setenv("ACCELKIT_THREADS", "1")
    dynamic = build_variant("openvino", digits_model, digits_workload.default_settings(64), digits_workload).model
    static = apply_static_shapes(dynamic, StaticShapesConfig(max_shapes=1))
    for rows in (16, 5, 16):
        x = torch.randn(rows, 1, 8, 8)
        np.testing.assert_allclose(static(x).numpy(), dynamic(x).numpy(), rtol=1e-4, atol=1e-4)
        static.settle()
    assert static.describe().extra["static_shapes_compiled"] == 1


def test_static_shapes_need_an_openvino_model():
    from accelkit.techniques.registry import composition_error
    from accelkit.techniques.static_shapes import StaticShapesConfig, apply_static_shapes

    with pytest.raises(ConfigError, match="put an OpenVINO step"):
        apply_static_shapes(torch.nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="max_shapes=0"):
        StaticShapesConfig(max_shapes=0)

    assert composition_error(["onnx", "static-shapes"])
    assert composition_error(["openvino-int8", "static-shapes"]) is None


def test_the_default_limit_follows_the_graph_size():
    from accelkit.techniques.static_shapes import default_max_shapes

    assert default_max_shapes(23_000_000) == 40  # minilm int8: every bucket length up to 256 fits
    assert default_max_shapes(90_000_000) == 11  # minilm fp32
    assert default_max_shapes(440_000_000) == 4  # a BERT-base fp32 graph: the floor


def test_before_settling_serves_every_call_on_the_dynamic_compile(digits_workload, digits_model, monkeypatch):
    from accelkit.techniques.static_shapes import StaticShapesConfig, apply_static_shapes

    monkeypatch.setenv("ACCELKIT_THREADS", "1")
    dynamic = build_variant("openvino", digits_model, digits_workload.default_settings(64), digits_workload).model
    assert dynamic.before_settling() is None  # one compile serves every call alike
    static = apply_static_shapes(dynamic, StaticShapesConfig(max_shapes=4))
    one_off = static.before_settling()
    x = torch.randn(16, 1, 8, 8)
    one_off.settle()
    np.testing.assert_allclose(one_off(x).numpy(), dynamic(x).numpy(), rtol=1e-5, atol=1e-6)
    assert static.describe().extra["static_shapes_compiled"] == 0  # the view compiled nothing
    static.settle()
    static(x)
    assert static.describe().extra["static_shapes_compiled"] == 1  # the model itself still settles


def test_bench_keeps_the_worse_quality_of_a_one_off_and_a_settled_call(tmp_path, monkeypatch):
    """A plan whose one-off calls run on another compile is scored on both; the worse is reported."""
    from accelkit.bench import bench
    from accelkit.runtimes.base import Runtime
    from accelkit.runtimes.openvino import OpenVinoModule

    class ReversedRows(Runtime):  # the one-off path, made worse: every other row's output reversed
        def __init__(self, inner):
            self.inner = inner

        def run(self, *args, **kwargs):
            out = self.inner(*args, **kwargs)
            out[::2] = out[::2].flip(-1)
            return out

    real = OpenVinoModule.before_settling
    monkeypatch.setattr(OpenVinoModule, "before_settling", lambda self: ReversedRows(real(self)))
    monkeypatch.setenv("ACCELKIT_THREADS", "1")
    from accelkit.workloads import workload_from_model

    wl = workload_from_model(mf.sentence_transformers_folder(tmp_path), mf.text_file(tmp_path, 60))
    res = bench(wl, ["openvino+static-shapes"], batch_size=8, repeats=1, warmup=0, roofline=False)
    plan = res.variants[1]
    settled, before = plan.details["quality_settled"], plan.details["quality_before_settling"]
    assert before["cosine_min"] < settled["cosine_min"] - 0.1
    assert plan.quality == {k: min(settled[k], before[k]) for k in settled}
    assert plan.quality_drop == pytest.approx(res.variants[0].quality["cosine_mean"] - before["cosine_mean"])
    from accelkit.report.results import result_notes

    assert any(n.startswith("openvino+static-shapes: quality is the worse") for n in result_notes(res))
