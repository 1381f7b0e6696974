"""The runtime registry: each runtime registered by its own module, found by name, by the model it
serves and by the device it runs on; the technique registry's forms come from it."""

from __future__ import annotations

import pytest
from torch import nn

from accelkit.errors import ConfigError, DeviceUnavailableError
from accelkit.runtimes import (
    Runtime,
    ShipError,
    get_runtime,
    runtime_forms,
    runtime_of,
    runtime_serving,
)
from accelkit.runtimes.onnxruntime import OrtModule
from accelkit.runtimes.torch_eager import TorchEager


def test_every_registered_runtime_keeps_the_contract():
    from accelkit.runtimes.registry import RUNTIMES

    get_runtime("torch")  # loads the package's modules
    assert {"torch", "onnxruntime", "onnxruntime-cuda", "openvino"} <= set(RUNTIMES)
    for name, cls in RUNTIMES.items():
        assert issubclass(cls, Runtime) and cls.name == name
        assert cls.form and cls.family and cls.model_file and cls.devices
        for method in ("run", "describe", "save", "load"):
            assert getattr(cls, method) is not getattr(Runtime, method), (name, method)


def test_unknown_runtime_names_the_known_ones():
    with pytest.raises(ConfigError, match="onnxruntime"):
        get_runtime("no-such-runtime")


def test_a_module_is_served_by_torch_and_a_runtime_by_itself():
    assert isinstance(runtime_of(nn.Linear(2, 2)), TorchEager)
    with pytest.raises(ShipError, match="no runtime serves a str"):
        runtime_of("not a model")


def test_the_runtime_for_a_device_is_chosen_by_the_registry():
    assert runtime_serving("onnxruntime", "cpu") is OrtModule
    assert runtime_serving("torch", "cuda:0") is TorchEager
    with pytest.raises(DeviceUnavailableError, match="no runtime runs tensorflow"):
        runtime_serving("tensorflow", "cpu")


def test_technique_forms_come_from_the_runtimes():
    from accelkit.techniques.registry import FORMS

    foreign = runtime_forms(lambda cls: cls.family != "torch")
    assert foreign == ("ort", "openvino", "openvino-lm")
    assert set(foreign) <= set(FORMS) and "eager" in FORMS
