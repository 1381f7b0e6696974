"""The Workload contract: a model factory, its evaluation data, and its quality metric.

A workload knows how to run a model over its data (``predict``) under given
``RunSettings`` and how to score outputs against the fp32 baseline's (``quality``).
Techniques change the model or the settings; they never reach into the data.
"""

from __future__ import annotations

import contextlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from accelkit._threads import torch_threads_beside
from accelkit.errors import ConfigError
from accelkit.runtimes.base import Runtime

__all__ = ["OFFERS", "RunSettings", "TensorWorkload", "Workload", "autocast_context", "cache_dir"]

# What a workload can offer a technique (``Workload.offers()``); techniques ask for these, never
# for a workload's name or attributes. Each promise names what the workload then provides.
OFFERS = {
    "text": "token sequences with attention masks (padding and length matter); `tokenizer` attribute",
    "padded-batches": "the default run pads batches the model then computes on (unsorted or fixed-length): "
                      "sorting by length and padding per batch trims them",
    "tensor-inputs": "one input tensor per batch (the PT2E and ONNX static int8 paths)",
    "classifier": "outputs class logits; quality is scored against labels",
    "trainable": "labelled training data and a loss: `train_dataset()`, `loss_fn(outputs, targets)`",
    "onnx-exportable": "the model exports to ONNX with example_inputs (dynamic batch axis)",
    "block-stack": "a stack of blocks early exit can put exit heads between (found by find_blocks)",
    "encoder-blocks": "a BERT-style encoder (`encoder.layer` blocks) whose pooled output is the result",
    "sentence-embedding": "mean-pooled sentence embeddings scored by cosine to the fp32 model's",
    "unlabelled-text": "extra unlabelled training text by name: `unlabelled_text(name)`",
    "generate": "a causal language model writing text with `generate`; items are generated tokens",
    "draft-model": "a smaller model of the same tokenizer for speculative decoding: `draft_model()`",
    "student:small": "a smaller architecture of the same family: `student_architecture('small')`",
    "student:mobilenet-v2": "a MobileNetV2-style student: `student_architecture('mobilenet-v2')`",
}

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cache_dir() -> Path:
    """Where trained baseline weights and caches live: $ACCELKIT_CACHE or ~/.cache/accelkit."""
    path = Path(os.environ.get("ACCELKIT_CACHE", Path.home() / ".cache" / "accelkit"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class RunSettings:
    """How a workload runs a model: batch size, padding policy, autocast, device."""

    batch_size: int = 32
    # "fixed": pad every batch to max_length; "dynamic": to the batch's longest; "bucketed": to the
    # batch's longest rounded up to lengths ~10% apart (workloads.text.bucketed_length), so a
    # runtime that compiles per shape meets few shapes
    padding: str = "fixed"
    sort_by_length: bool = False  # length-sorted batches make dynamic padding pay off
    max_length: int = 128
    autocast: str | None = None  # None | "bf16" | "fp16"
    device: str = "cpu"
    extras: dict[str, Any] = field(default_factory=dict)  # technique-specific flags, JSON-able

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size}: expected a positive integer")
        if self.padding not in ("fixed", "dynamic", "bucketed"):
            raise ConfigError(f"padding={self.padding!r}: expected 'fixed', 'dynamic' or 'bucketed'")
        if self.autocast not in (None, *_AUTOCAST_DTYPES):
            raise ConfigError(f"autocast={self.autocast!r}: expected None, 'bf16' or 'fp16'")
        if self.max_length < 1:
            raise ConfigError(f"max_length={self.max_length}: expected a positive integer")

    def to_dict(self) -> dict:
        return asdict(self)

    def with_(self, **changes: Any) -> RunSettings:
        return replace(self, **changes)


def autocast_context(settings: RunSettings) -> contextlib.AbstractContextManager:
    """torch.autocast for the settings' dtype and device, or a null context."""
    if settings.autocast is None:
        return contextlib.nullcontext()
    device_type = "cuda" if settings.device.startswith("cuda") else "cpu"
    return torch.autocast(device_type=device_type, dtype=_AUTOCAST_DTYPES[settings.autocast])


class Workload(ABC):
    """A model + data + metric. Subclasses fill in the abstract methods."""

    name: str = "workload"
    primary_metric: str = "accuracy"
    higher_is_better: bool = True
    item_unit: str = "items"
    default_batch_size: int = 32

    def offers(self) -> frozenset[str]:
        """What this workload offers techniques (keys of ``OFFERS``); a technique whose needs
        are not all offered is not listed for it."""
        return frozenset()

    def unlabelled_text(self, name: str | None) -> tuple[str, ...]:
        """Extra unlabelled training text by name (workloads offering "unlabelled-text")."""
        raise ConfigError(f"workload {self.name!r} offers no unlabelled text (asked for {name!r})")

    def student_architecture(self, name: str) -> nn.Module:
        """A fresh, untrained student network (workloads offering "student:<name>")."""
        raise ConfigError(f"workload {self.name!r} offers no student architecture {name!r}")

    def default_settings(self, batch_size: int | None = None, device: str = "cpu") -> RunSettings:
        """How the user runs this model today: the ``default`` baseline every speed-up is against."""
        return RunSettings(batch_size=batch_size or self.default_batch_size, device=device)

    def data_report(self, data: Any, settings: RunSettings) -> dict[str, Any]:
        """Facts about ``data`` under ``settings`` a reader must see (text workloads: how many items
        were truncated at the model's maximum length). JSON-able."""
        return {}

    def screen_data(self, limit: int) -> Any:
        """Calibration items that look like the evaluation data, for screening candidates:
        by default the first ``limit`` calibration items (text workloads match lengths)."""
        return self.calib_data(limit)

    @abstractmethod
    def build_model(self) -> nn.Module:
        """The fp32 baseline model, trained, in eval mode, on the CPU."""

    @abstractmethod
    def eval_data(self, limit: int | None = None) -> Any:
        """Held-out evaluation data; the search never tunes on it."""

    def calib_data(self, limit: int | None = None) -> Any:
        """Data for calibration/tuning, disjoint from ``eval_data``. Defaults to eval data."""
        return self.eval_data(limit)

    @abstractmethod
    def batches(self, data: Any, settings: RunSettings) -> Iterator[tuple[Any, Any]]:
        """Yield (model inputs, index) pairs covering ``data`` in settings' batch size."""

    @abstractmethod
    def forward(self, model: Callable, inputs: Any) -> torch.Tensor:
        """Run the model on one batch of inputs and return the output tensor."""

    @abstractmethod
    def quality(self, outputs: torch.Tensor, reference: torch.Tensor, data: Any) -> dict[str, float]:
        """Quality of ``outputs`` (and against the baseline's ``reference``)."""

    @abstractmethod
    def n_items(self, data: Any) -> int:
        """How many items (sentences, images, tokens) one pass over ``data`` processes."""

    def predict(self, model: Callable, data: Any, settings: RunSettings) -> torch.Tensor:
        """Outputs for every item of ``data`` in the original order. A runtime that prepares per
        input shape is settled first (``Runtime.settle``), so speed and quality are measured as a
        long run serves them: each shape prepared on meeting it, in the warm-up pass."""
        if isinstance(model, Runtime):
            model.settle()
        parts: list[tuple[Any, torch.Tensor]] = []
        with torch.inference_mode(), autocast_context(settings), torch_threads_beside(model):
            for inputs, index in self.batches(data, settings):
                parts.append((index, self.forward(model, inputs).float()))
        return _reassemble(parts)

    def example_inputs(self, data: Any, settings: RunSettings) -> Any:
        """One batch of model inputs (for FLOP counting, export, calibration)."""
        return next(iter(self.batches(data, settings)))[0]

    def worse_quality(self, first: dict[str, float], second: dict[str, float]) -> dict[str, float]:
        """Metric by metric, the worse of two measures of one model's quality (lower where higher
        is better, as quality floors read every metric); a metric only one has is kept."""
        pick = min if self.higher_is_better else max
        return {**first, **second, **{k: pick(first[k], second[k]) for k in first.keys() & second.keys()}}

    def quality_drop(self, quality: dict[str, float], reference: dict[str, float]) -> float:
        """How much worse ``quality`` is than ``reference`` in the primary metric (>0 is worse)."""
        q, r = quality[self.primary_metric], reference[self.primary_metric]
        return (r - q) if self.higher_is_better else (q - r)


def _reassemble(parts: list[tuple[Any, torch.Tensor]]) -> torch.Tensor:
    """Put batch outputs back into the data's original order."""
    if all(index is None for index, _ in parts):
        return torch.cat([out for _, out in parts])
    total = sum(len(index) for index, _ in parts)
    first = parts[0][1]
    result = first.new_empty((total, *first.shape[1:]))
    for index, out in parts:
        result[torch.as_tensor(index)] = out
    return result


class TensorWorkload(Workload):
    """A workload whose data is one input tensor (N, ...) with optional labels (N,).

    Quality is accuracy against the labels when given (classification), else the
    cosine similarity of outputs to the baseline's.
    """

    def __init__(
        self,
        name: str,
        model_fn: Callable[[], nn.Module],
        inputs: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        calib_inputs: torch.Tensor | None = None,
        calib_labels: torch.Tensor | None = None,
        default_batch_size: int = 32,
    ) -> None:
        from accelkit.workloads._checks import check_finite_tensors

        check_finite_tensors(name, inputs=inputs, labels=labels, calib_inputs=calib_inputs, calib_labels=calib_labels)
        self.name = name
        self._model_fn = model_fn
        self._inputs = inputs
        self._labels = labels
        self._calib = calib_inputs
        self._calib_labels = calib_labels
        self.default_batch_size = default_batch_size
        self.primary_metric = "accuracy" if labels is not None else "cosine_mean"

    def build_model(self) -> nn.Module:
        return self._model_fn().eval()

    def offers(self) -> frozenset[str]:
        found = {"tensor-inputs", "onnx-exportable"}
        if self._labels is not None:
            found.add("classifier")
        if callable(getattr(self, "train_dataset", None)) and callable(getattr(self, "loss_fn", None)):
            found.add("trainable")
        return frozenset(found)

    def eval_data(self, limit: int | None = None) -> dict[str, torch.Tensor]:
        n = len(self._inputs) if limit is None else min(limit, len(self._inputs))
        data = {"inputs": self._inputs[:n]}
        if self._labels is not None:
            data["labels"] = self._labels[:n]
        return data

    def calib_data(self, limit: int | None = None) -> dict[str, torch.Tensor]:
        if self._calib is None:
            return self.eval_data(limit)
        n = len(self._calib) if limit is None else min(limit, len(self._calib))
        data = {"inputs": self._calib[:n]}
        if self._calib_labels is not None:
            data["labels"] = self._calib_labels[:n]
        return data

    def batches(self, data: dict, settings: RunSettings) -> Iterator[tuple[Any, Any]]:
        x = data["inputs"]
        for start in range(0, len(x), settings.batch_size):
            yield x[start : start + settings.batch_size].to(settings.device), None

    def forward(self, model: Callable, inputs: torch.Tensor) -> torch.Tensor:
        return model(inputs)

    def n_items(self, data: dict) -> int:
        return len(data["inputs"])

    def quality(self, outputs: torch.Tensor, reference: torch.Tensor, data: dict) -> dict[str, float]:
        out = {}
        if "labels" in data:
            pred = outputs.argmax(-1).cpu()
            out["accuracy"] = float((pred == data["labels"]).float().mean())
            out["agreement"] = float((pred == reference.argmax(-1).cpu()).float().mean())
        else:
            cos = torch.nn.functional.cosine_similarity(
                outputs.flatten(1).float(), reference.flatten(1).float(), dim=1
            )
            out["cosine_mean"] = float(cos.mean())
            out["cosine_min"] = float(cos.min())
        return out
