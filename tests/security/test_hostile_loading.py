"""Hostile model folders: loading imports nothing a file names, reads only listed, verified files
inside the folder, and turns library parse errors into one SchemaError naming the file."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
import torch

import accelkit
from accelkit.errors import OutputPathError, SchemaError

X = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _edit_plan(folder, **changes) -> dict:
    meta = json.loads((folder / "plan.json").read_text())
    meta.update(changes)
    (folder / "plan.json").write_text(json.dumps(meta))
    return meta


@pytest.fixture
def saved_torch(tmp_path, digits_model):
    return accelkit.save(digits_model, tmp_path / "saved", workload="digits")


@pytest.fixture
def saved_onnx(tmp_path, digits_model):
    from accelkit.export.onnx import OrtConfig, OrtModule, export_onnx

    ort = OrtModule(export_onnx(digits_model, X[:2]), OrtConfig(intra_op_threads=1))
    return accelkit.save(ort, tmp_path / "saved_onnx", "onnx", workload="digits")


def test_load_does_not_import_a_workload_named_in_plan_json(tmp_path, saved_torch, monkeypatch, digits_workload):
    marker = tmp_path / "ran.txt"
    (tmp_path / "evilmod_hostile.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\ndef make():\n    raise SystemExit('ran')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    _edit_plan(saved_torch, workload="evilmod_hostile:make")
    with pytest.raises(SchemaError, match="never imports code named in a file"):
        accelkit.load(saved_torch)
    assert not marker.exists()
    # the user passes the workload object explicitly instead
    loaded = accelkit.load(saved_torch, workload=digits_workload)
    assert loaded(X).shape == (4, 10)


@pytest.mark.parametrize("name", ["../outside.bin", "/etc/hostname", "sub/../../outside.bin"])
def test_listed_file_outside_the_folder_is_refused(tmp_path, saved_torch, name):
    (tmp_path / "outside.bin").write_bytes(b"secret")
    meta = json.loads((saved_torch / "plan.json").read_text())
    files = {**meta["files"], name: _sha(tmp_path / "outside.bin")}
    _edit_plan(saved_torch, files=files)
    with pytest.raises(SchemaError, match="points outside"):
        accelkit.load(saved_torch)


def test_empty_files_list_does_not_skip_verification(saved_torch):
    (saved_torch / "model.safetensors").write_bytes(b"tampered")
    _edit_plan(saved_torch, files={})
    with pytest.raises(SchemaError, match="does not list model.safetensors"):
        accelkit.load(saved_torch)


def test_symlinked_model_file_is_refused(tmp_path, saved_torch):
    real = tmp_path / "elsewhere.safetensors"
    os.replace(saved_torch / "model.safetensors", real)
    (saved_torch / "model.safetensors").symlink_to(real)
    with pytest.raises(SchemaError, match="symlink"):
        accelkit.load(saved_torch)


def test_unlisted_model_file_is_refused(saved_torch):
    (saved_torch / "extra.safetensors").write_bytes((saved_torch / "model.safetensors").read_bytes())
    with pytest.raises(SchemaError, match="extra.safetensors is not listed"):
        accelkit.load(saved_torch)


def test_truncated_safetensors_with_recomputed_checksum_is_a_schema_error(saved_torch):
    weights = saved_torch / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    _edit_plan(saved_torch, files={"model.safetensors": _sha(weights)})
    with pytest.raises(SchemaError, match="model.safetensors is not a readable safetensors file"):
        accelkit.load(saved_torch)


def test_garbage_onnx_graph_is_a_schema_error(saved_onnx):
    graph = saved_onnx / "model.onnx"
    graph.write_bytes(b"\x08\x07garbage-not-a-protobuf" * 10)
    _edit_plan(saved_onnx, files={"model.onnx": _sha(graph)})
    with pytest.raises(SchemaError, match="model.onnx is not a valid ONNX graph"):
        accelkit.load(saved_onnx)


def test_save_refuses_an_optimize_folder_and_keeps_its_files(tmp_path, digits_model):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "plan.json").write_text(json.dumps({"schema": "accelkit.plan/1"}))
    (proj / "candidates.json").write_text("[]")
    with pytest.raises(OutputPathError, match="candidates.json"):
        accelkit.save(digits_model, proj, workload="digits")
    assert (proj / "candidates.json").read_text() == "[]"
    assert json.loads((proj / "plan.json").read_text())["schema"] == "accelkit.plan/1"


def test_save_with_overwrite_replaces_only_its_own_files(tmp_path, digits_model, saved_onnx):
    (saved_onnx / "notes.txt").write_text("keep me")
    accelkit.save(digits_model, saved_onnx, workload="digits", overwrite=True)
    assert (saved_onnx / "notes.txt").read_text() == "keep me"
    assert not (saved_onnx / "model.onnx").exists()  # accelkit's stale file went, the user's stayed
    assert accelkit.load(saved_onnx)(X).shape == (4, 10)


def test_saved_folder_gets_the_umask_not_0700(tmp_path, digits_model):
    old = os.umask(0o022)
    try:
        path = accelkit.save(digits_model, tmp_path / "shared", workload="digits")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o755
