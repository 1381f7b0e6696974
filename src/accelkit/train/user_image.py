"""Fine-tuning an image classifier on a folder of images, one sub-folder per class (``accelkit train
--task image-classification``): a Hugging Face image-classification folder (inputs made by its own
image processor) or a ``package.module:function`` returning an ``nn.Module`` (inputs resized and
normalised by ``accelkit.data.images``' pipeline, without augmentation).

The folder is read and split as ``optimize --model`` reads it (``accelkit.data.user_files``): the
calibration part is trained on, the held-out part scored. Images are decoded per read (DataLoader
workers, ``--num-workers``, decode in parallel). Buys: the accelkit loop's switches (bf16, compile,
channels-last, fused AdamW, accumulation, DDP) on a user's image model. Costs: one decode and
preprocessing call per image per epoch (no cache here).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

__all__ = ["ImageForward", "ImageItems", "ProcessorTransform", "ResizeNormalize", "evaluate_images"]


@dataclass
class ProcessorTransform:
    """A PIL image → (C, H, W) float tensor through a Hugging Face image processor (picklable, so
    DataLoader workers can run it)."""

    processor: Any

    def __call__(self, image: Any) -> torch.Tensor:
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]


@dataclass
class ResizeNormalize:
    """A PIL image → (C, size, size) float tensor: resized (bilinear), then ``(x/255 - mean) / std``
    as ``accelkit.data.images.normalize_batch`` does, no augmentation."""

    size: int
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.25,)

    def __call__(self, image: Any) -> torch.Tensor:
        import numpy as np
        from PIL import Image

        from accelkit.data.images import ImagePipelineConfig, normalize_batch

        image = image.resize((self.size, self.size), Image.BILINEAR)
        x = torch.from_numpy(np.ascontiguousarray(np.array(image, dtype=np.uint8).transpose(2, 0, 1)))
        config = ImagePipelineConfig(resize=self.size, crop=self.size, hflip_p=0.0, max_rotation_deg=0.0,
                                     mean=self.mean, std=self.std)
        return normalize_batch(x[None], config)[0]


class ImageItems(Dataset):
    """Image files and their class ids: ``(pixels (C, H, W), class id)`` per item, decoded on read."""

    def __init__(self, paths: list[Path], classes: list[int], transform: Any) -> None:
        self.paths, self.classes, self.transform = list(paths), list(classes), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        with Image.open(self.paths[index]) as image:
            return self.transform(image.convert("RGB")), self.classes[index]


class ImageForward(nn.Module):
    """The classifier called on pixels (B, C, H, W), returning its logits (B, classes): a Hugging
    Face model through ``pixel_values=``, any other module positionally (a tensor, tuple or dict
    output is read as ``logits``)."""

    def __init__(self, model: nn.Module, hugging_face: bool) -> None:
        super().__init__()
        self.model = model
        self.hugging_face = hugging_face

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        from accelkit.tasks import pick_output

        out = self.model(pixel_values=pixels) if self.hugging_face else self.model(pixels)
        return pick_output(out, "logits")


@torch.no_grad()
def evaluate_images(model: nn.Module, data: ImageItems, batch: int = 32) -> dict[str, float]:
    """``val_loss`` (mean cross-entropy) and ``val_accuracy`` (top-1) on held-out images."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss_sum, correct = 0.0, 0
    for pixels, classes in DataLoader(data, batch_size=batch):
        logits = model(pixels.to(device)).float().cpu()
        loss_sum += float(nn.functional.cross_entropy(logits, classes, reduction="sum"))
        correct += int((logits.argmax(-1) == classes).sum())
    model.train(was_training)
    return {"val_loss": loss_sum / max(len(data), 1), "val_accuracy": correct / max(len(data), 1)}
