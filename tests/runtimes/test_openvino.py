"""OpenVINO as a runtime (in the default install): a typed description and save/load with
identical outputs."""

from __future__ import annotations

import torch

from accelkit.export.onnx import export_onnx
from accelkit.runtimes import get_runtime
from accelkit.runtimes.openvino import OpenVinoConfig, OpenVinoModule

X = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def test_describe_save_and_load(digits_model, tmp_path):
    module = OpenVinoModule(export_onnx(digits_model, X[:2]), OpenVinoConfig(streams=2, threads=2),
                            details={"note": "kept"})
    record = module.describe()
    assert (record.runtime, record.device, record.precision, record.streams, record.threads) == \
        ("openvino", "cpu", "f32", 2, 2)
    fields = module.save(tmp_path)
    loaded = get_runtime(fields["runtime"]).load(tmp_path, fields)
    assert loaded.describe() == record
    torch.testing.assert_close(loaded(X), module(X))
    with torch.no_grad():
        torch.testing.assert_close(module(X), digits_model(X), rtol=1e-3, atol=1e-4)


def test_a_share_of_the_cores_is_not_pinned(digits_model, monkeypatch):
    # accelkit run's Ray actors each hold one thread of the machine: OpenVINO's default pinning
    # would put every actor's thread on the same first core
    import accelkit.runtimes.openvino as ov_runtime

    monkeypatch.setattr(ov_runtime, "available_cpus", lambda: 4)
    share = OpenVinoModule(export_onnx(digits_model, X[:2]), OpenVinoConfig(threads=1))
    assert share._compiled.get_property("ENABLE_CPU_PINNING") is False
    monkeypatch.setattr(ov_runtime, "available_cpus", lambda: 1)
    whole = OpenVinoModule(export_onnx(digits_model, X[:2]), OpenVinoConfig(threads=1))
    assert whole._compiled.get_property("ENABLE_CPU_PINNING") is True
    torch.testing.assert_close(share(X), whole(X))
