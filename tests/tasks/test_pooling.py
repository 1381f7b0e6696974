"""Pooling token states into one vector per row, as sentence-transformers does."""

from __future__ import annotations

import torch

from accelkit.tasks.pooling import mean_pool, pool_tokens


def test_pooling_modes_ignore_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert torch.equal(pool_tokens(hidden, mask, "mean"), torch.tensor([[2.0, 3.0]]))
    assert torch.equal(pool_tokens(hidden, mask, "cls"), torch.tensor([[1.0, 2.0]]))
    assert torch.equal(pool_tokens(hidden, mask, "max"), torch.tensor([[3.0, 4.0]]))
    assert torch.allclose(pool_tokens(hidden, mask, "mean_sqrt_len"), torch.tensor([[4.0, 6.0]]) / 2 ** 0.5)


def test_mean_pool_of_an_all_padding_row_is_zero_not_nan():
    out = mean_pool(torch.ones(1, 3, 2), torch.zeros(1, 3))
    assert torch.equal(out, torch.zeros(1, 2))
    assert torch.equal(mean_pool(torch.ones(1, 3, 2)), torch.ones(1, 2))
