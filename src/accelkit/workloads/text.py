"""Batching for tokenized text: what every text workload (minilm, a user's Hugging Face or
sentence-transformers model) shares — the default run the user has today, length-sorted
dynamic padding, and truncation only at the model's own maximum, counted and reported."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from accelkit.workloads.base import RunSettings, Workload

__all__ = ["TokenizedTextWorkload"]


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
        if settings.sort_by_length:
            enc = self.tokenizer(list(data), truncation=True, max_length=max_length)["input_ids"]
            # longest first, as sentence-transformers does: a memory error shows on the first batch
            order.sort(key=lambda i: -len(enc[i]))
        padding = "max_length" if settings.padding == "fixed" else "longest"
        for start in range(0, len(order), settings.batch_size):
            idx = order[start : start + settings.batch_size]
            enc = self.tokenizer([data[i] for i in idx], padding=padding, truncation=True,
                                 max_length=max_length, return_tensors="pt")
            inputs = {k: v.to(settings.device) for k, v in enc.items() if k in self.input_names}
            yield inputs, idx

    input_names: tuple[str, ...] = ("input_ids", "attention_mask")
