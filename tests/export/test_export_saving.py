"""accelkit.save / accelkit.load: outputs identical after a round trip; bad directories raise SchemaError."""

from __future__ import annotations

import json

import pytest
import torch

import accelkit
from accelkit.errors import OutputPathError, SchemaError
from accelkit.export.onnx import export_onnx
from accelkit.runtimes.onnxruntime import OrtConfig, OrtModule
from accelkit.saving import check_saveable
from accelkit.variants import build_variant
from accelkit.workloads.base import RunSettings

X = torch.rand(9, 1, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def ort_digits(digits_model):
    return OrtModule(export_onnx(digits_model, X[:2]), OrtConfig(intra_op_threads=1), details={"note": "fp32"})


def test_onnx_round_trip_is_identical(tmp_path, ort_digits):
    path = accelkit.save(ort_digits, tmp_path / "saved", "onnx", workload="digits",
                         settings=RunSettings(batch_size=64))
    loaded = accelkit.load(path)
    assert torch.equal(loaded(X), ort_digits(X))
    assert loaded.settings.batch_size == 64
    assert loaded.plan == [{"technique": "onnx", "config": {}}]
    assert loaded.details["note"] == "fp32"


@pytest.mark.parametrize("variant", ["int8-dynamic", "bf16-cast"])
def test_torch_variant_round_trip_is_identical(tmp_path, digits_workload, digits_model, variant):
    built = build_variant(variant, digits_model, RunSettings(batch_size=32), digits_workload)
    model, settings = built.model, built.settings
    with torch.inference_mode():
        before = model(X)
    accelkit.save((model, settings), tmp_path / variant, variant, workload="digits")
    loaded = accelkit.load(tmp_path / variant)
    with torch.inference_mode():
        assert torch.equal(loaded(X), before)


def test_user_model_without_workload_needs_the_baseline(tmp_path, digits_model):
    accelkit.save(digits_model, tmp_path / "plain")
    with pytest.raises(SchemaError, match="baseline"):
        accelkit.load(tmp_path / "plain")
    from accelkit.workloads.digits import DigitsCNN

    loaded = accelkit.load(tmp_path / "plain", baseline=DigitsCNN().eval())
    with torch.no_grad():
        assert torch.equal(loaded(X), digits_model(X))


def test_bad_directories_raise_schema_error(tmp_path, ort_digits):
    with pytest.raises(SchemaError, match="not a directory"):
        accelkit.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SchemaError, match="plan.json"):
        accelkit.load(tmp_path / "empty")
    path = accelkit.save(ort_digits, tmp_path / "ok", "onnx")
    meta = json.loads((path / "plan.json").read_text())
    (path / "plan.json").write_text(json.dumps({**meta, "schema": "other/9"}))
    with pytest.raises(SchemaError, match="schema"):
        accelkit.load(path)
    (path / "plan.json").write_text(json.dumps(meta))
    with open(path / "model.onnx", "r+b") as fh:  # flip a byte: the checksum catches it
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(SchemaError, match="checksum"):
        accelkit.load(path)
    (path / "plan.json").write_text("{not json")
    with pytest.raises(SchemaError, match="JSON"):
        accelkit.load(path)


def test_save_refuses_to_overwrite_a_foreign_directory(tmp_path, ort_digits):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(OutputPathError, match="overwrite"):
        accelkit.save(ort_digits, tmp_path / "mine", "onnx")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    # re-saving over an earlier save is fine and leaves no temp directories behind
    accelkit.save(ort_digits, tmp_path / "s", "onnx")
    accelkit.save(ort_digits, tmp_path / "s", "onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "s"]



def test_cli_export_writes_a_loadable_directory(tmp_path):
    from typer.testing import CliRunner

    from accelkit.cli import app

    result = CliRunner().invoke(app, ["export", "-w", "digits", "-v", "onnx", "-o", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    loaded = accelkit.load(tmp_path / "cli")
    assert loaded(X).shape == (9, 10)


def test_cli_export_unknown_variant_exits_2(tmp_path):
    from accelkit.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["export", "-w", "digits", "-v", "no-such-thing", "-o", str(tmp_path / "x")])
    assert exc.value.code == 2


def test_load_never_runs_a_technique(tmp_path, digits_workload, digits_model, monkeypatch):
    """plan.json names the runtime; loading puts the recorded int8 layers back without building."""
    import accelkit.techniques.registry as registry
    import accelkit.variants as variants

    built = build_variant("int8-dynamic", digits_model, RunSettings(batch_size=32), digits_workload)
    path = accelkit.save(built, tmp_path / "int8", workload="digits")
    meta = json.loads((path / "plan.json").read_text())
    assert meta["runtime"] == "torch" and meta["quantized_linears"] and meta["plan"][0]["technique"] == "int8-dynamic"

    def refuse(*args, **kwargs):
        raise AssertionError("load re-ran a technique")

    monkeypatch.setattr(variants, "build_variant", refuse)
    monkeypatch.setattr(registry, "build_plan", refuse)
    loaded = accelkit.load(path)
    with torch.inference_mode():
        assert torch.equal(loaded(X), built.model(X))


def test_a_model_no_runtime_can_save_is_refused_before_anything_is_written(tmp_path, digits_workload,
                                                                          digits_model):
    from accelkit.runtimes import ShipError

    with pytest.raises(ShipError, match="no runtime serves"):
        accelkit.save(lambda x: x, tmp_path / "fn")
    with pytest.raises(ShipError, match="no runtime serves"):
        check_saveable((lambda x: x, RunSettings()))
    wider = build_variant("default", digits_model, RunSettings(batch_size=32), digits_workload).model
    wider.head[2] = torch.nn.Linear(wider.head[2].in_features, 3)  # a shape the digits architecture lacks
    check_saveable(wider)  # a structural change shows only when saved tensors meet the architecture
    with pytest.raises(ShipError, match="structural change"):
        accelkit.save(wider, tmp_path / "wider", workload="digits")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_saved_built_plan_carries_the_configs_it_applied(tmp_path, digits_workload, digits_model):
    """save(built) writes built.plan: a self-tuning step's choice, not only the technique names."""
    from accelkit.techniques.registry import build_plan

    plan = ["onnx", {"technique": "parallel-streams", "config": {"streams": 2}}]
    built = build_plan(plan, digits_model, RunSettings(batch_size=32), digits_workload)
    path = accelkit.save(built, tmp_path / "streams", workload="digits")
    meta = json.loads((path / "plan.json").read_text())
    assert meta["plan"][1] == {"technique": "parallel-streams", "config": {"streams": 2, "version": 1}}
    assert meta["plan"] == built.plan
    assert accelkit.load(path).plan == built.plan
