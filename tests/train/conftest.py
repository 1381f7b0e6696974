"""Digits data (scikit-learn, no download) shared by the training tests."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset


@pytest.fixture(scope="session")
def digits_dataset() -> TensorDataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data[:512], dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = torch.tensor(digits.target[:512])
    return TensorDataset(x, y)


@pytest.fixture(autouse=True)
def one_torch_thread(monkeypatch):
    """One intra-op thread: tiny models gain nothing from two, and on a shared 2-core box
    OpenMP barriers under contention make them several times slower. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # for the subprocesses the tests start
    yield
    torch.set_num_threads(before)
