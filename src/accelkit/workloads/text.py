"""Batching for tokenized text: what every text workload (minilm, a user's Hugging Face or
sentence-transformers model) shares — the default run the user has today, length-sorted
dynamic padding, and truncation only at the model's own maximum, counted and reported."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain
from typing import Any

import numpy as np
import torch

from accelkit.workloads.base import RunSettings, Workload

__all__ = ["TokenizedTextWorkload", "bucketed_length", "pad_token_rows", "padded_length"]


def bucketed_length(n: int, cap: int) -> int:
    """The shortest of the lengths 8, 9, 10, 11, 13, 15, … 30, 33, 37, 41, … (each ~10% past the
    last) that holds ``n`` tokens, at most ``cap`` (itself a length): 34 lengths up to a cap of
    256, so a runtime that compiles once per input shape meets few, for ~3.5% more pad tokens
    than padding to the longest row (the 512 held-out pydoc sentences in batches of 32)."""
    length = 8
    while length < n:
        length = max(length + 1, (length * 11 + 9) // 10)  # integer ceil of 1.1 × length
    return max(n, min(length, cap))


def padded_length(longest: int, bucket_cap: int | None = None) -> int:
    """The length a batch whose longest row has ``longest`` tokens is padded to: that row's, or
    with ``bucket_cap`` the bucket length holding it (``bucketed_length``)."""
    return longest if bucket_cap is None else bucketed_length(longest, bucket_cap)


def pad_token_rows(tokenizer: Any, encoded: Any, idx: list[int], names: Any, *,
                   bucket_cap: int | None = None) -> dict[str, torch.Tensor]:
    """Rows ``idx`` of an unpadded tokenizer output as tensors padded to their longest row, on the
    tokenizer's padding side: what ``tokenizer(texts, padding="longest")`` returns for those texts,
    without tokenizing them a second time. ``bucket_cap``: pad further, to ``bucketed_length`` of
    the longest row with that cap."""
    lengths = np.array([len(encoded["input_ids"][i]) for i in idx])
    longest = padded_length(int(lengths.max()), bucket_cap)
    left = getattr(tokenizer, "padding_side", "right") == "left"
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    # one boolean mask places every row's ids at once: a tensor a row cost 10 ms a pass on minilm
    places = np.arange(longest)[None, :]
    filled = places >= longest - lengths[:, None] if left else places < lengths[:, None]
    out = {}
    for name in names:
        if name not in encoded:
            continue
        rows = np.full((len(idx), longest), pad_id if name == "input_ids" else 0, dtype=np.int64)
        rows[filled] = np.fromiter(chain.from_iterable(encoded[name][i] for i in idx), np.int64, int(lengths.sum()))
        out[name] = torch.from_numpy(rows)
    return out


class TokenizedTextWorkload(Workload):
    """A workload whose items are strings run through ``self.tokenizer``.

    Subclasses set ``model_max_length`` (the longest input the model takes: a
    sentence-transformers ``max_seq_length``, else the tokenizer's or the config's) and
    ``sorts_by_length`` (True where the user's own call sorts, as ``SentenceTransformer.encode``
    does; False for a plain Hugging Face tokenizer call, which pads each batch in data order).
    """

    item_unit = "sentences"
    model_max_length: int = 512
    sorts_by_length: bool = False
    tokenizer: Any = None

    def default_settings(self, batch_size: int | None = None, device: str = "cpu") -> RunSettings:
        # what the user runs today: pad each batch to its longest item, truncate at the model's max
        return RunSettings(batch_size=batch_size or self.default_batch_size, device=device, padding="dynamic",
                           sort_by_length=self.sorts_by_length, max_length=self.model_max_length)

    def sentence_folder(self) -> Any:
        """The sentence-transformers folder this model loads from (a Path), or None: peers
        (``accelkit bench --peers``) are built from it."""
        return None

    def text_offers(self) -> set[str]:
        """``text``, and ``padded-batches`` when the default run leaves padding to trim."""
        return {"text"} if self.sorts_by_length else {"text", "padded-batches"}

    def token_lengths(self, data: list[str]) -> list[int]:
        """Untruncated token counts (special tokens included)."""
        return [len(ids) for ids in self.tokenizer(list(data), truncation=False)["input_ids"]]

    def data_report(self, data: list[str], settings: RunSettings) -> dict[str, Any]:
        lengths = self.token_lengths(data)
        cut = sum(n > settings.max_length for n in lengths)
        return {"items": len(data), "max_length": settings.max_length, "model_max_length": self.model_max_length,
                "truncated": cut, "longest_tokens": max(lengths, default=0)}

    def n_items(self, data: list[str]) -> int:
        return len(data)

    def batches(self, data: list[str], settings: RunSettings) -> Iterator[tuple[Any, Any]]:
        order = list(range(len(data)))
        max_length = min(settings.max_length, self.model_max_length)
        if settings.sort_by_length or settings.padding == "bucketed":
            enc = self.tokenizer(list(data), truncation=True, max_length=max_length)
            if settings.sort_by_length:
                # longest first, as sentence-transformers does: a memory error shows on the first batch
                order.sort(key=lambda i: -len(enc["input_ids"][i]))
            if settings.padding != "fixed":  # each sentence tokenized once: pad the ids already in hand
                cap = max_length if settings.padding == "bucketed" else None
                for start in range(0, len(order), settings.batch_size):
                    idx = order[start : start + settings.batch_size]
                    inputs = pad_token_rows(self.tokenizer, enc, idx, self.input_names, bucket_cap=cap)
                    yield {k: v.to(settings.device) for k, v in inputs.items()}, idx
                return
        padding = "max_length" if settings.padding == "fixed" else "longest"
        for start in range(0, len(order), settings.batch_size):
            idx = order[start : start + settings.batch_size]
            enc = self.tokenizer([data[i] for i in idx], padding=padding, truncation=True,
                                 max_length=max_length, return_tensors="pt")
            inputs = {k: v.to(settings.device) for k, v in enc.items() if k in self.input_names}
            yield inputs, idx

    input_names: tuple[str, ...] = ("input_ids", "attention_mask")
