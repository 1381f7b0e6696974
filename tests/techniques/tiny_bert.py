"""A tiny random BERT encoder and padded inputs for it, shared by the technique tests."""

from __future__ import annotations

import torch
from torch import nn


def tiny_bert() -> nn.Module:
    """4 layers of width 32 with 4 heads, seeded: the same weights on every call."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=32,
    )
    return BertModel(cfg, add_pooling_layer=False).eval()


def bert_inputs(n: int = 6, t: int = 10, seed: int = 2) -> dict[str, torch.Tensor]:
    """``n`` rows of ``t`` token ids with a different amount of padding per row."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 50, (n, t), generator=g)
    mask = torch.ones(n, t, dtype=torch.long)
    for i in range(n):
        mask[i, t - (i % t) :] = 0
    return {"input_ids": ids, "attention_mask": mask}
