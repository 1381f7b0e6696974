"""Tokenized text stream for gpt-mini: byte-level tokens stored once in a uint16 memmap.

It buys batches of random (B, T) windows cut by one vectorized gather, with no
Python work per token; it costs one tokenize pass and 2 bytes per token on disk.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from accelkit.config import Config
from accelkit.data._common import (
    DATA_FORMAT_VERSION,
    atomic_write_bytes,
    atomic_write_json,
    cache_root,
    ensure_writable_dir,
    file_lock,
)
from accelkit.errors import ConfigError

__all__ = [
    "TextWindowConfig",
    "TextWindowStream",
    "TokenizedText",
    "pydoc_corpus",
    "tokenize_bytes",
]


def pydoc_corpus() -> bytes:
    """The gpt-mini corpus: Python's bundled pydoc topic text as UTF-8 bytes (~470 kB), in a fixed order."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics)).encode("utf-8")


def tokenize_bytes(data: bytes) -> np.ndarray:
    """Byte-level tokenizer (vocab 256, the gpt-mini one): uint16 token ids, one per byte."""
    return np.frombuffer(data, dtype=np.uint8).astype(np.uint16)


class TokenizedText:
    """Tokens of a corpus in ``<dir>/<sha>.u16`` (raw uint16) + ``.json`` (length, checksum).

    Written once (atomically, under a lock) and memory-mapped afterwards; a
    corrupt or foreign file (size or recorded hash mismatch) is rewritten.
    """

    def __init__(self, data: bytes | None = None, cache_dir: str | Path | None = None) -> None:
        data = pydoc_corpus() if data is None else data
        if len(data) < 2:
            raise ConfigError(
                f"corpus has {len(data)} bytes; need at least 2 to form an (input, target) pair"
            )
        digest = hashlib.sha256(data).hexdigest()
        root = Path(cache_dir) if cache_dir else cache_root() / "text"
        stem = f"bytes-v{DATA_FORMAT_VERSION}-{digest[:24]}"
        self.path = root / f"{stem}.u16"
        meta_path = root / f"{stem}.json"
        meta = {
            "version": DATA_FORMAT_VERSION,
            "source_sha256": digest,
            "tokens": len(data),
            "dtype": "uint16",
            "tokenizer": "bytes",
        }
        self.rebuilt = False
        if not self._valid(meta_path, meta):
            ensure_writable_dir(root, need_bytes=2 * len(data))
            with file_lock(root / f"{stem}.lock"):
                if not self._valid(meta_path, meta):
                    tokens = tokenize_bytes(data)
                    atomic_write_bytes(self.path, tokens.tobytes())
                    atomic_write_json(
                        meta_path, {**meta, "sha256": hashlib.sha256(tokens.tobytes()).hexdigest()}
                    )
                    self.rebuilt = True
        self.tokens = np.memmap(self.path, dtype=np.uint16, mode="r", shape=(len(data),))

    def _valid(self, meta_path: Path, meta: dict[str, Any]) -> bool:
        if not (meta_path.is_file() and self.path.is_file()):
            return False
        try:
            found = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            return False
        if any(found.get(k) != v for k, v in meta.items()):
            return False
        if self.path.stat().st_size != 2 * meta["tokens"]:
            return False
        return hashlib.sha256(self.path.read_bytes()).hexdigest() == found.get("sha256")

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class TextWindowConfig(Config):
    """block_size T and batch_size B of the (B, T) windows; seed of the window starts."""

    block_size: int = 128
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if self.block_size < 1:
            raise ConfigError(f"block_size={self.block_size!r}: expected >= 1")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size!r}: expected >= 1")


class TextWindowStream(torch.utils.data.IterableDataset):
    """Endless random windows: yields (x, y) int64 (B, T) with y = x shifted by one token.

    One fancy-index gather per batch: ``tokens[starts[:, None] + arange(T + 1)]``.
    Under DataLoader workers each worker draws from its own seed stream.
    """

    def __init__(self, text: TokenizedText, config: TextWindowConfig | None = None) -> None:
        self.text = text
        self.config = config or TextWindowConfig()
        if len(text) < self.config.block_size + 1:
            raise ConfigError(
                f"block_size={self.config.block_size} needs a corpus of at least {self.config.block_size + 1} "
                f"tokens, got {len(text)}; lower block_size"
            )
        self._offsets = np.arange(self.config.block_size + 1, dtype=np.int64)

    def batch(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        starts = rng.integers(0, len(self.text) - cfg.block_size, size=cfg.batch_size)
        windows = torch.from_numpy(
            self.text.tokens[starts[:, None] + self._offsets].astype(np.int64)
        )
        return windows[:, :-1], windows[:, 1:]  # (B, T) inputs, (B, T) next-token targets

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        worker = 0 if info is None else info.id
        rng = np.random.default_rng([self.config.seed, worker])
        while True:
            yield self.batch(rng)
