"""torch's thread count beside a runtime that computes on its own threads (accelkit._threads)."""

import torch
from torch import nn

from accelkit._threads import torch_threads_beside
from accelkit.workloads.base import TensorWorkload


class _OwnThreads(nn.Module):
    """Stands in for an OpenVINO / ONNX Runtime module: records torch's thread count when called."""

    computes_outside_torch = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(torch.get_num_threads())
        return x.flatten(1)


class _TorchModel(_OwnThreads):
    computes_outside_torch = False


def test_predict_keeps_one_torch_thread_beside_a_foreign_runtime_and_restores_the_count():
    # torch's idle OpenMP workers would spin on the cores the runtime's threads need next
    wl = TensorWorkload("t", lambda: nn.Identity(), torch.randn(10, 3))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        foreign, own = _OwnThreads(), _TorchModel()
        out = wl.predict(foreign, wl.eval_data(), wl.default_settings().with_(batch_size=4))
        assert out.shape == (10, 3) and set(foreign.seen) == {1}
        assert torch.get_num_threads() == 2  # restored
        wl.predict(own, wl.eval_data(), wl.default_settings().with_(batch_size=4))
        assert set(own.seen) == {2}  # a torch model keeps every thread
    finally:
        torch.set_num_threads(before)


def test_the_onnx_and_openvino_runtimes_say_they_compute_outside_torch():
    from accelkit.runtimes.onnxruntime import OrtModule
    from accelkit.runtimes.openvino import OpenVinoModule
    from accelkit.runtimes.torch_eager import TorchEager

    assert OrtModule.computes_outside_torch and OpenVinoModule.computes_outside_torch
    assert not TorchEager.computes_outside_torch
    with torch_threads_beside(nn.Linear(1, 1)):
        pass  # no attribute: no change, no error
