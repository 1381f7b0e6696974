"""ONNX Runtime as a runtime: a typed description, save/load with identical outputs and settings,
parallel streams, and the provider chosen by the device."""

from __future__ import annotations

import pytest
import torch

from accelkit.errors import ConfigError, SchemaError
from accelkit.export.onnx import export_onnx, quantize_onnx_dynamic
from accelkit.runtimes import RuntimeRecord, get_runtime
from accelkit.runtimes.onnxruntime import OrtConfig, OrtModule

X = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def digits_onnx(digits_model):
    return export_onnx(digits_model, X[:2])


def test_describe_is_a_typed_record(digits_onnx):
    record = OrtModule(digits_onnx, OrtConfig(intra_op_threads=2), details={"note": "x"}).describe()
    assert isinstance(record, RuntimeRecord)
    assert (record.runtime, record.device, record.precision, record.streams, record.threads) == \
        ("onnxruntime", "cpu", "fp32", 1, 2)
    assert record.to_dict()["note"] == "x" and record.to_dict()["quantized_ops"] == 0
    with pytest.raises(AttributeError):
        record.threads = 3  # frozen
    assert OrtModule(quantize_onnx_dynamic(digits_onnx)).describe().precision == "int8"


def test_save_and_load_keep_outputs_settings_and_facts(digits_onnx, tmp_path):
    ort = OrtModule(digits_onnx, OrtConfig(intra_op_threads=1, graph_optimization_level="basic"),
                    details={"note": "kept"})
    fields = ort.save(tmp_path)
    assert (tmp_path / "model.onnx").read_bytes() == digits_onnx
    loaded = get_runtime(fields["runtime"]).load(tmp_path, fields)
    assert loaded.config == ort.config and loaded.describe() == ort.describe()
    assert torch.equal(loaded(X), ort(X))
    assert loaded.serialized_size_bytes == len(digits_onnx)


def test_load_refuses_a_graph_that_does_not_parse(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07not-a-protobuf" * 4)
    with pytest.raises(SchemaError, match="not a valid ONNX graph"):
        OrtModule.load(tmp_path, {"runtime": "onnxruntime"})


def test_streams_split_rows_and_keep_outputs(digits_onnx):
    one = OrtModule(digits_onnx, OrtConfig(intra_op_threads=2))
    two = one.with_streams(2)
    assert two.describe().streams == 2 and two.describe().extra["threads_per_stream"] == 1
    torch.testing.assert_close(two(X), one(X))
    with pytest.raises(ConfigError, match="more streams"):
        one.with_streams(3)


def test_cpu_sessions_use_the_cpu_provider(digits_onnx):
    assert OrtModule(digits_onnx, OrtConfig(intra_op_threads=1)).session.get_providers() == ["CPUExecutionProvider"]
