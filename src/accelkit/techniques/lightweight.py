"""Lightweight architectures: depthwise-separable convs, MobileNetV2 blocks, squeeze-excitation, compound scaling.

A k×k conv costs k²·C_in·C_out per pixel; depthwise + pointwise costs k²·C_in + C_in·C_out,
about k² times fewer FLOPs and parameters. The cost: less capacity per layer (recovered by
distillation from the original), and depthwise kernels that run far below peak on CPUs, so
the wall-clock gain is smaller than the FLOP ratio — measure it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from accelkit.architectures.mobilenet import (
    CompoundScaling,
    DepthwiseSeparableConv2d,
    InvertedResidual,
    MobileDigitsNet,
    SqueezeExcitation,
    efficient_family,
)
from accelkit.config import Config
from accelkit.errors import ConfigError
from accelkit.measure.model_stats import compare_architectures
from accelkit.techniques._workload_kinds import TRAINABLE_CLASSIFIER
from accelkit.techniques.registry import BuildContext, Built, register_technique

# the building blocks live with the architectures (a workload builds MobileDigitsNet students too);
# re-exported here, where a reader of this technique looks for them
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
