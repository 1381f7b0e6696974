"""digits: a small CNN on scikit-learn's bundled 8×8 handwritten digits.

The network is a sequence of ``blocks`` then a ``head`` so that pruning, early exit
and depthwise replacement can address its stages by name. Trained once on first use.
"""

from __future__ import annotations

import torch
from torch import nn

from accelkit.workloads._weights import cached_trained
from accelkit.workloads.base import TensorWorkload

__all__ = ["DigitsCNN", "DigitsWorkload", "load_digits_split", "train_digits"]


def load_digits_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fixed stratified 75/25 split: x (N, 1, 8, 8) float in [0, 1], y (N,) long."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    idx = torch.arange(len(y)).numpy()
    tr, te = train_test_split(idx, test_size=0.25, random_state=0, stratify=digits.target)
    return x[tr], y[tr], x[te], y[te]


def _stage(cin: int, cout: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class DigitsCNN(nn.Module):
    """Three conv stages (8×8 → 4×4 → 2×2) and a linear head; ``width`` scales channels."""

    def __init__(self, width: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        w = width
        self.blocks = nn.Sequential(_stage(1, w, True), _stage(w, 2 * w, True), _stage(2 * w, 2 * w, False))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * w, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, 1, 8, 8)
        return self.head(self.blocks(x))


def train_digits(model: nn.Module, epochs: int = 30, lr: float = 3e-3, seed: int = 0) -> nn.Module:
    """Plain Adam training on the train split (a few seconds on 2 cores)."""
    x, y, _, _ = load_digits_split()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * ((len(x) + 63) // 64))
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), 64):
            idx = perm[start : start + 64]
            # light shift augmentation: the 8×8 digits overfit quickly without it
            xb = torch.roll(x[idx], shifts=tuple(torch.randint(-1, 2, (2,), generator=gen).tolist()), dims=(2, 3))
            loss = nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


class DigitsWorkload(TensorWorkload):
    """Classification of the 450 held-out digits; quality = test accuracy (fraction)."""

    item_unit = "images"

    def __init__(self, width: int = 64) -> None:
        x_tr, y_tr, x_te, y_te = load_digits_split()
        self.width = width
        self.train_inputs, self.train_labels = x_tr, y_tr
        super().__init__(
            "digits",
            lambda: cached_trained(f"digits-cnn-w{width}-v1", lambda: DigitsCNN(width), train_digits),
            x_te,
            y_te,
            calib_inputs=x_tr,
            calib_labels=y_tr,
            default_batch_size=256,
        )

    def train_dataset(self) -> torch.utils.data.TensorDataset:
        return torch.utils.data.TensorDataset(self.train_inputs, self.train_labels)

    def offers(self) -> frozenset[str]:
        return super().offers() | {"block-stack", "student:small", "student:mobilenet-v2"}

    def student_architecture(self, name: str) -> nn.Module:
        if name == "small":
            return DigitsCNN(width=16)
        if name == "mobilenet-v2":
            from accelkit.architectures.mobilenet import MobileDigitsNet

            return MobileDigitsNet(width_mult=2.0)
        return super().student_architecture(name)

    @staticmethod
    def loss_fn(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(outputs, targets)
