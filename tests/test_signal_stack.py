import ctypes
import sys

import pytest

from accelkit.signal_stack import _sigaltstack, _StackT, keep_signal_stack

pytestmark = pytest.mark.skipif(not sys.platform.startswith(("linux", "darwin")), reason="sigaltstack is POSIX")


def _current() -> tuple[int, int, int]:
    now = _StackT()
    assert _sigaltstack()(None, ctypes.byref(now)) == 0
    return now.ss_sp or 0, now.ss_size, now.ss_flags


def test_a_signal_stack_swapped_inside_is_given_back():
    before = _current()
    buffer = ctypes.create_string_buffer(65536)  # what OpenVINO's compile_model does to the thread
    theirs = _StackT(ctypes.cast(buffer, ctypes.c_void_p), 0, len(buffer))
    with keep_signal_stack():
        assert _sigaltstack()(ctypes.byref(theirs), None) == 0
        assert _current()[0] == ctypes.addressof(buffer)
    assert _current() == before  # the swapped-in buffer may be freed now: no signal lands on it


def test_openvino_compile_leaves_the_signal_stack_as_it_was(monkeypatch):
    import torch

    from accelkit.runtimes.openvino import OpenVinoConfig
    from accelkit.techniques.openvino_runtime import openvino_module

    before = _current()
    module = openvino_module(torch.nn.Linear(8, 8).eval(), torch.randn(2, 8), OpenVinoConfig())
    assert module(torch.randn(2, 8)).shape == (2, 8)
    assert _current() == before
