"""Per-item classes, shared by the classification tasks: a user's labels (class names from the
config's ``id2label`` or ids) as the model's class ids, and top-1 agreement with the fp32 model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accelkit.errors import DataFileError

if TYPE_CHECKING:
    import torch

__all__ = ["class_ids", "top1_quality"]


def class_ids(raw: list | None, config: Any, source: Path) -> list[int] | None:
    """User labels as the model's class ids: names from ``id2label`` or integers in range."""
    if raw is None:
        return None
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    by_name = {v: k for k, v in id2label.items()}
    n = int(getattr(config, "num_labels", len(id2label)) or len(id2label))
    out = []
    for value in raw:
        text = str(value).strip()
        if text in by_name:
            out.append(by_name[text])
        elif text.lstrip("-").isdigit() and 0 <= int(text) < n:
            out.append(int(text))
        else:
            names = ", ".join(id2label.get(i, str(i)) for i in range(min(n, 8)))
            raise DataFileError(f"{source}: label {text!r} is not one of the model's {n} classes ({names}); "
                                "use the class names of config.json's id2label or ids 0..num_labels-1")
    return out


def top1_quality(outputs: torch.Tensor, reference: torch.Tensor, labels: Sequence[int] | None,
                 agreement: str) -> dict[str, float]:
    """``agreement``: how often the top class is the fp32 model's; ``accuracy`` against the
    labels when there is one per item."""
    import torch

    pred, ref = outputs.argmax(-1).cpu(), reference.argmax(-1).cpu()
    found = {agreement: float((pred == ref).float().mean())}
    if labels is not None and len(labels) == len(pred):
        found["accuracy"] = float((pred == torch.tensor(list(labels))).float().mean())
    return found
