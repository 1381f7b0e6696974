"""Eager PyTorch as a runtime: int8, SmoothQuant and cast layers are recorded and put back into a
given architecture with identical outputs; what the record cannot describe is refused at save."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from accelkit.errors import SchemaError
from accelkit.runtimes import ShipError
from accelkit.runtimes.torch_eager import CastInputs, SmoothedLinear, TorchEager

X = torch.randn(5, 8, generator=torch.Generator().manual_seed(0))


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()


def _round_trip(model: nn.Module, tmp_path) -> nn.Module:
    fields = TorchEager(model).save(tmp_path)
    return TorchEager.load(tmp_path, fields, baseline=_net()).unwrap()


def test_int8_smoothed_and_cast_layers_round_trip(tmp_path):
    from accelkit.techniques.quantize import quantize_dynamic_int8

    model = _net()
    model[0] = SmoothedLinear(model[0], torch.linspace(0.5, 2.0, 8))
    model, _ = quantize_dynamic_int8(model)
    with torch.inference_mode():
        before = model(X)
    loaded = _round_trip(model, tmp_path)
    assert isinstance(loaded[0], SmoothedLinear)
    assert TorchEager(loaded).describe().precision == "int8"
    with torch.inference_mode():
        assert torch.equal(loaded(X), before)


def test_a_cast_model_stays_in_its_dtype(tmp_path):
    model = CastInputs(_net().to(torch.bfloat16), torch.bfloat16)
    loaded = _round_trip(model, tmp_path)
    assert isinstance(loaded, CastInputs) and loaded.model[0].weight.dtype == torch.bfloat16
    assert TorchEager(loaded).describe().precision == "bf16"
    with torch.no_grad():
        assert torch.equal(loaded(X), model(X))


def test_load_never_changes_the_given_shapes(tmp_path):
    wider = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4))
    fields = TorchEager(wider).save(tmp_path)
    with pytest.raises(SchemaError, match="baseline differs"):
        TorchEager.load(tmp_path, fields, baseline=_net())
    with pytest.raises(SchemaError, match="fp32 architecture"):
        TorchEager.load(tmp_path, fields)


def test_what_the_record_cannot_describe_is_refused_at_save(tmp_path):
    compiled = nn.Sequential(torch.fx.symbolic_trace(_net()))
    with pytest.raises(ShipError, match="compiled graph"):
        TorchEager(compiled).save(tmp_path)

    from accelkit.techniques.compile import WarmedModule

    with pytest.raises(ShipError, match="compiled graph"):
        TorchEager(WarmedModule(torch.fx.symbolic_trace(_net()))).save(tmp_path)
    with pytest.raises(ShipError, match="technique's own save function"):
        TorchEager(WarmedModule(copy.deepcopy(_net()))).save(tmp_path)
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_check_saveable_refuses_what_save_refuses_without_copying_or_writing(tmp_path):
    from accelkit.techniques.compile import WarmedModule

    with pytest.raises(ShipError, match="compiled graph"):
        TorchEager(nn.Sequential(torch.fx.symbolic_trace(_net()))).check_saveable()
    with pytest.raises(ShipError, match="technique's own save function"):
        TorchEager(WarmedModule(copy.deepcopy(_net()))).check_saveable()
    packed = _net()
    packed.register_buffer("codes", torch.quantize_per_tensor(torch.randn(4), 0.1, 0, torch.qint8))
    with pytest.raises(ShipError, match="cannot ship as plain tensors"):
        TorchEager(packed).check_saveable()
    with pytest.raises(ShipError, match="cannot ship as plain tensors"):
        TorchEager(packed).save(tmp_path)
    assert not any(tmp_path.iterdir())
    TorchEager(_net()).check_saveable()  # a plain model passes
