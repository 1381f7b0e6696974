"""Lightweight architectures: depthwise-separable convs, MobileNetV2 blocks, squeeze-excitation, compound scaling.

A k×k conv costs k²·C_in·C_out per pixel; depthwise + pointwise costs k²·C_in + C_in·C_out,
about k² times fewer FLOPs and parameters. The cost: less capacity per layer (recovered by
distillation from the original), and depthwise kernels that run far below peak on CPUs, so
the wall-clock gain is smaller than the FLOP ratio — measure it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from accelkit.config import Config
from accelkit.errors import ConfigError
from accelkit.techniques._workload_kinds import TRAINABLE_CLASSIFIER
from accelkit.techniques.registry import BuildContext, Built, register_technique

__all__ = [
    "CompoundScaling",
    "DepthwiseConfig",
    "DepthwiseSeparableConv2d",
    "InvertedResidual",
    "MobileDigitsNet",
    "SqueezeExcitation",
    "compare_architectures",
    "efficient_family",
    "to_depthwise_separable",
]


class DepthwiseSeparableConv2d(nn.Module):
    """k×k depthwise conv (one filter per channel) → optional BatchNorm → 1×1 pointwise conv.

    Drop-in for ``nn.Conv2d(in, out, k, stride, padding, dilation, bias)``: same input and output shapes.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        mid_norm: bool = True,
    ) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ConfigError(f"in_channels={in_channels}, out_channels={out_channels}: expected positive counts")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.depthwise = nn.Conv2d(
            in_channels, in_channels, kernel_size, stride=stride, padding=padding,
            dilation=dilation, groups=in_channels, bias=False,
        )
        self.norm = nn.BatchNorm2d(in_channels) if mid_norm else nn.Identity()
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) → (B, C_out, H', W')
        return self.pointwise(self.norm(self.depthwise(x)))


class SqueezeExcitation(nn.Module):
    """Channel attention: global average → bottleneck MLP → sigmoid gate per channel."""

    def __init__(self, channels: int, reduction: int = 4, min_hidden: int = 8) -> None:
        super().__init__()
        if reduction < 1:
            raise ConfigError(f"reduction={reduction}: expected a positive integer, e.g. 4")
        hidden = max(min_hidden, channels // reduction)
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        gate = x.mean((2, 3), keepdim=True)  # (B, C, 1, 1)
        gate = torch.sigmoid(self.expand(nn.functional.relu(self.reduce(gate))))
        return x * gate


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1×1 expand → k×k depthwise → [SE] → 1×1 linear bottleneck (+ skip when shapes allow)."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, expand_ratio: float = 4.0,
        kernel_size: int = 3, se: bool = False,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ConfigError(f"stride={stride}: expected 1 or 2")
        if expand_ratio < 1:
            raise ConfigError(f"expand_ratio={expand_ratio}: expected ≥ 1 (MobileNetV2 uses 6)")
        hidden = int(round(in_channels * expand_ratio))
        layers: list[nn.Module] = []
        if hidden != in_channels:
            layers += [nn.Conv2d(in_channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, kernel_size, stride, kernel_size // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
        ]
        if se:
            layers.append(SqueezeExcitation(hidden))
        # linear bottleneck: no activation after the projection (ReLU would destroy information in few channels)
        layers += [nn.Conv2d(hidden, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


@dataclass
class CompoundScaling(Config):
    """EfficientNet scaling: depth α^φ, width β^φ, resolution γ^φ (α·β²·γ² ≈ 2: FLOPs ≈ 2^φ)."""

    phi: float = 0.0
    alpha: float = 1.2
    beta: float = 1.1
    gamma: float = 1.15
    version: int = 1

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "gamma"):
            if getattr(self, name) < 1.0:
                raise ConfigError(f"{name}={getattr(self, name)}: expected ≥ 1 (a base of growth per φ)")

    def multipliers(self) -> tuple[float, float, float]:
        """(depth, width, resolution) multipliers for this φ."""
        return self.alpha**self.phi, self.beta**self.phi, self.gamma**self.phi


def _round_channels(c: float, divisor: int = 4) -> int:
    return max(divisor, int(c + divisor / 2) // divisor * divisor)


class MobileDigitsNet(nn.Module):
    """A MobileNetV2-style classifier for small images (digits: (B, 1, 8, 8)).

    ``width_mult``/``depth_mult``/``resolution`` are the compound-scaling knobs; inputs are
    resized to ``resolution`` first when it differs from ``base_resolution``.
    """

    # (expand ratio, channels, repeats, stride) per stage, as in MobileNetV2's table
    STAGES = ((1, 16, 1, 1), (4, 24, 2, 2), (4, 40, 2, 2), (4, 64, 1, 1))

    def __init__(
        self, width_mult: float = 1.0, depth_mult: float = 1.0, resolution: int = 8,
        se: bool = True, in_channels: int = 1, num_classes: int = 10, base_resolution: int = 8,
    ) -> None:
        super().__init__()
        if width_mult <= 0 or depth_mult <= 0 or resolution < 4:
            raise ConfigError(
                f"width_mult={width_mult}, depth_mult={depth_mult}, resolution={resolution}: "
                "expected positive multipliers and a resolution of at least 4"
            )
        self.resolution, self.base_resolution = resolution, base_resolution
        self.config = {"width_mult": width_mult, "depth_mult": depth_mult, "resolution": resolution, "se": se}
        stem = _round_channels(16 * width_mult)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU6(inplace=True)]
        cin = stem
        for expand, c, n, s in self.STAGES:
            cout = _round_channels(c * width_mult)
            for i in range(max(1, math.ceil(n * depth_mult))):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, expand, se=se and expand > 1))
                cin = cout
        self.blocks = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) → (B, classes)
        if self.resolution != self.base_resolution:
            x = nn.functional.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False)
        return self.head(self.blocks(x))


def efficient_family(phis: tuple[float, ...] = (0, 1, 2), scaling: CompoundScaling | None = None, **kwargs: Any) -> dict[str, nn.Module]:
    """MobileDigitsNet models scaled by compound coefficients φ: ``{"b0": ..., "b1": ...}``."""
    base = scaling or CompoundScaling()
    family = {}
    for phi in phis:
        depth, width, res = CompoundScaling(phi, base.alpha, base.beta, base.gamma).multipliers()
        family[f"b{phi:g}"] = MobileDigitsNet(width, depth, int(round(8 * res)), **kwargs)
    return family


@dataclass
class DepthwiseConfig(Config):
    """Which convs ``to_depthwise_separable`` replaces: groups==1, kernel > 1, ≥ ``min_in_channels`` inputs."""

    min_in_channels: int = 8  # below this a depthwise stage is nearly rank-1 and hurts accuracy more than it saves
    mid_norm: bool = True
    version: int = 1

    def __post_init__(self) -> None:
        if self.min_in_channels < 1:
            raise ConfigError(f"min_in_channels={self.min_in_channels}: expected a positive integer")


def to_depthwise_separable(model: nn.Module, config: DepthwiseConfig | None = None) -> tuple[nn.Module, list[str]]:
    """Replace standard k×k ``nn.Conv2d`` layers by depthwise + pointwise pairs, in place.

    New layers start untrained: recover accuracy with ``distill_classifier`` from the original.
    Returns (model, names of replaced layers); raises ConfigError when nothing qualifies.
    """
    config = config or DepthwiseConfig()
    replaced = []
    for name, module in list(model.named_modules()):
        if not (
            type(module) is nn.Conv2d
            and module.groups == 1
            and max(module.kernel_size) > 1
            and module.in_channels >= config.min_in_channels
            and isinstance(module.padding, (int, tuple))
        ):
            continue
        new = DepthwiseSeparableConv2d(
            module.in_channels, module.out_channels, module.kernel_size, module.stride, module.padding,
            module.dilation, bias=module.bias is not None, mid_norm=config.mid_norm,
        )
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, new)
        replaced.append(name)
    if not replaced:
        raise ConfigError(
            f"no Conv2d with groups=1, kernel > 1 and ≥ {config.min_in_channels} input channels to replace; "
            "lower min_in_channels or use a conv model"
        )
    return model, replaced


def compare_architectures(models: dict[str, nn.Module], example_inputs: torch.Tensor) -> dict[str, dict[str, float]]:
    """Parameters and FLOPs per item of each model on ``example_inputs`` (B, ...), with ratios to the first."""
    from accelkit.measure import count_flops, count_parameters

    rows: dict[str, dict[str, float]] = {}
    first = None
    n = len(example_inputs)
    for name, model in models.items():
        model.eval()
        flops = count_flops(lambda m=model: m(example_inputs))
        row = {"params": count_parameters(model), "flops_per_item": (flops or 0) / n}
        if first is None:
            first = row
        row["params_ratio"] = row["params"] / first["params"]
        row["flops_ratio"] = row["flops_per_item"] / first["flops_per_item"] if first["flops_per_item"] else float("nan")
        rows[name] = row
    return rows


@register_technique(
    "depthwise-separable",
    group="structure",
    description="k×k convs (≥8 input channels) replaced by depthwise+pointwise, accuracy recovered by KD",
    needs=TRAINABLE_CLASSIFIER,
    expensive=True,
    saveable=False,  # its blocks are no layer the saved format records
)
def _depthwise_separable(model: nn.Module, ctx: BuildContext) -> Built:
    import copy

    from accelkit.techniques.distill.classifier import cached_classifier_student, student_built

    teacher = model.cpu().eval()
    torch.manual_seed(0)
    student, replaced = to_depthwise_separable(copy.deepcopy(teacher), DepthwiseConfig())
    student = cached_classifier_student(ctx.workload, "depthwise", student, teacher, {"arch": "dws", "replaced": replaced})
    return student_built(student, teacher, ctx, replaced_layers=replaced)


@register_technique(
    "mobilenet-v2",
    group="structure",
    description="the workload's MobileNetV2-style net (digits: inverted residuals + SE, width 2: ~23% of the "
    "FLOPs) distilled from the baseline",
    needs=(*TRAINABLE_CLASSIFIER, "student:mobilenet-v2"),
    expensive=True,
    saveable=False,  # another architecture than the workload's baseline
)
def _mobilenet_v2(model: nn.Module, ctx: BuildContext) -> Built:
    from accelkit.techniques.distill.classifier import distil_offered_student

    return distil_offered_student("mobilenet-v2", model, ctx)
