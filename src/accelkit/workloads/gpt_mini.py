"""gpt-mini: a small byte-level decoder-only transformer (nanoGPT shape) on the pydoc text.

Trained once on first use (a minute on 2 cores) and cached; quality is the
validation loss (nats per byte) on held-out text windows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache

import torch
from torch import nn
from torch.nn import functional as F

from accelkit.errors import ConfigError
from accelkit.workloads._weights import cached_trained
from accelkit.workloads.base import TensorWorkload, Workload

__all__ = ["GPTConfig", "GPTMini", "GPTMiniWorkload", "pydoc_bytes", "generate"]


@lru_cache(maxsize=1)
def pydoc_bytes() -> bytes:
    """Python's bundled pydoc topic text as UTF-8 bytes (~470 kB), in a fixed order."""
    from accelkit.data.text import pydoc_corpus

    return pydoc_corpus()


@dataclass
class GPTConfig:
    block_size: int = 128
    vocab_size: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")

    def to_dict(self) -> dict:
        return asdict(self)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, heads, T, head_dim)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = nn.Sequential(nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.GELU(), nn.Linear(4 * cfg.n_embd, cfg.n_embd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPTMini(nn.Module):
    """Token + position embeddings, ``n_layer`` pre-norm blocks, tied LM head."""

    def __init__(self, cfg: GPTConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = cfg or GPTConfig()
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:  # idx: (B, T) long → logits (B, T, 256)
        T = idx.shape[1]
        if T > self.config.block_size:
            raise ConfigError(f"sequence length {T} exceeds block_size={self.config.block_size}; crop the input")
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(T, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


@torch.inference_mode()
def generate(model: Callable, idx: torch.Tensor, new_tokens: int, block_size: int = 128) -> torch.Tensor:
    """Greedy decoding of ``new_tokens`` bytes after the prompt ``idx`` (B, T)."""
    for _ in range(new_tokens):
        logits = model(idx[:, -block_size:])
        idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return idx


def _split_tokens() -> tuple[torch.Tensor, torch.Tensor]:
    data = torch.frombuffer(bytearray(pydoc_bytes()), dtype=torch.uint8).long()
    cut = int(len(data) * 0.9)
    return data[:cut], data[cut:]


def train_gpt_mini(model: GPTMini, steps: int = 400, batch: int = 16, lr: float = 2e-3, seed: int = 0) -> GPTMini:
    """AdamW with warm-up + cosine decay on random windows of the training text."""
    train, _ = _split_tokens()
    T = model.config.block_size
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    model.train()
    for step in range(steps):
        frac = step / steps
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / 20) * 0.5 * (1 + math.cos(math.pi * frac))
        starts = torch.randint(0, len(train) - T - 1, (batch,), generator=gen)
        x = torch.stack([train[s : s + T] for s in starts])
        y = torch.stack([train[s + 1 : s + T + 1] for s in starts])
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return model.eval()


class GPTMiniWorkload(Workload):
    """Next-byte prediction on held-out pydoc windows; quality = validation loss."""

    name = "gpt-mini"
    primary_metric = "val_loss"
    higher_is_better = False
    item_unit = "tokens"
    default_batch_size = 16

    def __init__(self, eval_windows: int = 64, config: GPTConfig | None = None) -> None:
        self.config = config or GPTConfig()
        self.eval_windows = eval_windows

    def build_model(self) -> nn.Module:
        cfg = self.config
        key = f"gpt-mini-l{cfg.n_layer}-d{cfg.n_embd}-t{cfg.block_size}-v1"
        return cached_trained(key, lambda: GPTMini(cfg), train_gpt_mini)

    def _windows(self, tokens: torch.Tensor, n: int) -> dict[str, torch.Tensor]:
        T = self.config.block_size
        n = min(n, (len(tokens) - 1) // T)
        x = torch.stack([tokens[i * T : (i + 1) * T] for i in range(n)])
        y = torch.stack([tokens[i * T + 1 : (i + 1) * T + 1] for i in range(n)])
        return {"inputs": x, "targets": y}

    def eval_data(self, limit: int | None = None) -> dict[str, torch.Tensor]:
        return self._windows(_split_tokens()[1], limit or self.eval_windows)

    def calib_data(self, limit: int | None = None) -> dict[str, torch.Tensor]:
        return self._windows(_split_tokens()[0], limit or self.eval_windows)

    def offers(self) -> frozenset[str]:
        return frozenset({"tensor-inputs", "onnx-exportable", "trainable"})

    def train_dataset(self) -> torch.utils.data.TensorDataset:
        d = self._windows(_split_tokens()[0], 10**9)
        return torch.utils.data.TensorDataset(d["inputs"], d["targets"])

    @staticmethod
    def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())

    # windows batch and run exactly like any tensor input
    batches = TensorWorkload.batches
    forward = TensorWorkload.forward

    def n_items(self, data: dict) -> int:
        return data["inputs"].numel()

    def quality(self, outputs: torch.Tensor, reference: torch.Tensor, data: dict) -> dict[str, float]:
        return {"val_loss": float(self.loss_fn(outputs, data["targets"]))}
