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
