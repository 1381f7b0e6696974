"""Pruning: structured (channels physically removed, via Torch-Pruning), unstructured, 2:4.

Structured pruning buys real speed on dense kernels because the layers get smaller;
it costs accuracy that a short fine-tune wins back. Unstructured (masked) pruning only
zeros weights: smaller compressed files, no speed-up on dense CPU/GPU kernels.
2:4 semi-structured sparsity speeds matmuls only on CUDA GPUs with sparse tensor cores.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from accelkit._atomic import atomic_write_bytes
from accelkit._lazy import require
from accelkit.config import Config
from accelkit.errors import ConfigError, DeviceUnavailableError, OutputPathError, SchemaError

__all__ = [
    "FineTuneConfig",
    "PruningError",
    "SemiStructuredConfig",
    "StructuredPruneConfig",
    "UnstructuredPruneConfig",
    "apply_semi_structured_24_",
    "fine_tune",
    "layer_sparsity",
    "mask_2_to_4",
    "load_pruned",
    "prune_structured",
    "prune_unstructured_",
    "pruned_shapes",
    "save_pruned",
    "semi_structured_unavailable_reason",
]

_IMPORTANCES = ("magnitude", "taylor")
_PLAN_FORMAT = "accelkit.pruned/1"


class PruningError(ConfigError):
    """The model cannot be pruned as asked (untraceable, or the result would not run)."""


def _check_ratio(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and 0.0 < float(value) < 1.0):
        raise ConfigError(f"{name}={value!r}: expected a fraction strictly between 0 and 1, e.g. 0.5")


@dataclass
class FineTuneConfig(Config):
    """A short supervised fine-tune after pruning (or to recover any compressed model)."""

    epochs: int = 5
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 1e-4
    seed: int = 0
    version: int = 1

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ConfigError(f"epochs={self.epochs}: expected 0 (no fine-tune) or more")
        if not self.lr > 0:
            raise ConfigError(f"lr={self.lr}: expected a positive learning rate, e.g. 1e-3")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size}: expected a positive integer")


@dataclass
class StructuredPruneConfig(Config):
    """Remove ``ratio`` of the channels of every prunable layer group (dependency-aware).

    ``importance``: "magnitude" (L2 of the group's weights) or "taylor" (|w·∂L/∂w|,
    needs training data). ``steps`` > 1 prunes iteratively, fine-tuning between steps.
    ``ignore``: names of layers to keep whole; by default the output layer.
    """

    ratio: float = 0.5
    importance: str = "magnitude"
    steps: int = 1
    ignore: tuple[str, ...] = ()
    round_to: int | None = None
    taylor_batches: int = 4
    finetune: FineTuneConfig = field(default_factory=lambda: FineTuneConfig(epochs=0))
    version: int = 1

    def __post_init__(self) -> None:
        _check_ratio("ratio", self.ratio)
        if self.importance not in _IMPORTANCES:
            raise ConfigError(f"importance={self.importance!r}: expected one of {list(_IMPORTANCES)}")
        if self.steps < 1:
            raise ConfigError(f"steps={self.steps}: expected 1 (one-shot) or more (iterative)")
        if self.round_to is not None and self.round_to < 1:
            raise ConfigError(f"round_to={self.round_to}: expected None or a positive channel multiple")
        if self.taylor_batches < 1:
            raise ConfigError(f"taylor_batches={self.taylor_batches}: expected a positive integer")
        self.ignore = tuple(self.ignore)
        if isinstance(self.finetune, dict):
            self.finetune = FineTuneConfig.from_dict(self.finetune)


# ---------------------------------------------------------------------------- fine-tune


class _shuffled_batches:
    """Shuffled (inputs, targets) batches; slices tensors directly for a TensorDataset (no per-item collate)."""

    def __init__(self, dataset: torch.utils.data.Dataset, batch_size: int, gen: torch.Generator) -> None:
        self.dataset, self.batch_size, self.gen = dataset, batch_size, gen

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self):
        if isinstance(self.dataset, torch.utils.data.TensorDataset):
            perm = torch.randperm(len(self.dataset), generator=self.gen)
            for start in range(0, len(perm), self.batch_size):
                idx = perm[start : start + self.batch_size]
                yield tuple(t[idx] for t in self.dataset.tensors)
        else:
            yield from torch.utils.data.DataLoader(
                self.dataset, batch_size=self.batch_size, shuffle=True, generator=self.gen
            )


def fine_tune(
    model: nn.Module,
    dataset: torch.utils.data.Dataset,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    config: FineTuneConfig | None = None,
    *,
    teacher: nn.Module | None = None,
    kd_loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> nn.Module:
    """Train ``model`` on ``dataset`` ((input, target) pairs) with AdamW + cosine decay.

    With ``teacher`` and ``kd_loss(student_out, teacher_out, target)`` the loss is
    distillation from the teacher instead of ``loss_fn``. Returns the model in eval mode.
    """
    config = config or FineTuneConfig()
    if config.epochs == 0:
        return model.eval()
    gen = torch.Generator().manual_seed(config.seed)
    loader = _shuffled_batches(dataset, config.batch_size, gen)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    total = config.epochs * len(loader)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))
    if teacher is not None:
        teacher.eval()
    model.train()
    for _ in range(config.epochs):
        for inputs, targets in loader:
            out = model(inputs)
            if teacher is not None and kd_loss is not None:
                with torch.no_grad():
                    t_out = teacher(inputs)
                loss = kd_loss(out, t_out, targets)
            else:
                loss = loss_fn(out, targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


# ---------------------------------------------------------------------------- structured


def _output_layer_name(model: nn.Module) -> str | None:
    """The last Linear/Conv in definition order: pruning its outputs would change the model's output."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            last = name
    return last


def _resolve_ignored(model: nn.Module, names: tuple[str, ...]) -> list[nn.Module]:
    modules = dict(model.named_modules())
    if not names:
        out = _output_layer_name(model)
        return [modules[out]] if out is not None else []
    missing = [n for n in names if n not in modules]
    if missing:
        raise ConfigError(
            f"ignore={list(names)}: no layer named {missing[0]!r} in the model; "
            f"use names from model.named_modules(), e.g. {list(modules)[1:4]}"
        )
    return [modules[n] for n in names]


def _run(model: nn.Module, example_inputs: Any) -> Any:
    if isinstance(example_inputs, dict):
        return model(**example_inputs)
    if isinstance(example_inputs, (tuple, list)):
        return model(*example_inputs)
    return model(example_inputs)


def _accumulate_taylor_grads(
    model: nn.Module, dataset: torch.utils.data.Dataset, loss_fn: Callable, batches: int, batch_size: int
) -> None:
    model.zero_grad(set_to_none=True)
    model.eval()  # BN statistics frozen: the gradient scores the trained model, not a new one
    loader = _shuffled_batches(dataset, batch_size, torch.Generator().manual_seed(0))
    for i, (inputs, targets) in enumerate(loader):
        if i >= batches:
            break
        loss_fn(model(inputs), targets).backward()


def prune_structured(
    model: nn.Module,
    example_inputs: Any,
    config: StructuredPruneConfig | None = None,
    *,
    dataset: torch.utils.data.Dataset | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    teacher: nn.Module | None = None,
    kd_loss: Callable | None = None,
) -> nn.Module:
    """Physically remove channels from ``model`` (in place) and return it, smaller.

    Torch-Pruning's dependency graph finds every layer coupled to a pruned channel
    (the next conv's inputs, batch norms, the head) so the result is a plain, smaller
    ``nn.Module`` that runs without masks. Between iterative steps (and after the last)
    the model is fine-tuned on ``dataset`` when ``config.finetune.epochs`` > 0.
    """
    config = config or StructuredPruneConfig()
    tp = require("torch_pruning", "compress")
    needs_data = config.importance == "taylor" or config.finetune.epochs > 0
    if needs_data and (dataset is None or loss_fn is None):
        raise ConfigError(
            f"importance={config.importance!r} with finetune.epochs={config.finetune.epochs} needs training data: "
            "pass dataset= and loss_fn= (or use importance='magnitude' and finetune epochs=0)"
        )
    model.eval()
    with torch.no_grad():
        try:
            reference_out = _run(model, example_inputs)
        except Exception as exc:
            raise PruningError(
                f"the model does not run on the example inputs ({type(exc).__name__}: {exc}); "
                "pass inputs of the shape its forward expects"
            ) from exc
    ignored = _resolve_ignored(model, config.ignore)
    importance = (
        tp.importance.GroupMagnitudeImportance(p=2)
        if config.importance == "magnitude"
        else tp.importance.GroupTaylorImportance()
    )
    params_before = sum(p.numel() for p in model.parameters())
    try:
        pruner = tp.pruner.BasePruner(
            model,
            example_inputs,
            importance=importance,
            pruning_ratio=config.ratio,
            iterative_steps=config.steps,
            ignored_layers=ignored,
            round_to=config.round_to,
        )
    except Exception as exc:
        raise PruningError(
            f"Torch-Pruning cannot trace this model ({type(exc).__name__}: {exc}); "
            "make its forward traceable with the example inputs or list the offending layers in ignore="
        ) from exc
    for _step in range(config.steps):
        if config.importance == "taylor":
            _accumulate_taylor_grads(model, dataset, loss_fn, config.taylor_batches, config.finetune.batch_size)
        try:
            pruner.step()
        except Exception as exc:
            raise PruningError(f"pruning step {_step + 1} failed ({type(exc).__name__}: {exc})") from exc
        model.zero_grad(set_to_none=True)
        _check_still_runs(model, example_inputs, reference_out)
        if config.finetune.epochs > 0:
            fine_tune(model, dataset, loss_fn, config.finetune, teacher=teacher, kd_loss=kd_loss)
    params_after = sum(p.numel() for p in model.parameters())
    model.accelkit_details = {
        "technique": "prune-structured",
        "config": config.to_dict(),
        "params_before": params_before,
        "params_after": params_after,
        "channels": {
            n: s.get("out_channels", s.get("out_features"))
            for n, s in pruned_shapes(model).items()
            if s["type"] != "Attention"
        },
    }
    return model.eval()


def _check_still_runs(model: nn.Module, example_inputs: Any, reference_out: Any) -> None:
    # Never hand back a model that fails a forward pass or changed its output shape.
    model.eval()
    with torch.no_grad():
        try:
            out = _run(model, example_inputs)
        except Exception as exc:
            raise PruningError(
                f"the pruned model no longer runs ({type(exc).__name__}: {exc}); "
                "add the layer named in the error to ignore="
            ) from exc
    if isinstance(out, torch.Tensor) and isinstance(reference_out, torch.Tensor) and out.shape != reference_out.shape:
        raise PruningError(
            f"pruning changed the output shape {tuple(reference_out.shape)} → {tuple(out.shape)}; "
            f"add the output layer to ignore= (e.g. {_output_layer_name(model)!r})"
        )


# ---------------------------------------------------------------------------- save / load


def pruned_shapes(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Per-layer shape attributes (channels, features, groups, attention heads): the JSON half of a pruned model."""
    shapes: dict[str, dict[str, Any]] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            shapes[name] = {"type": type(m).__name__, "in_channels": m.in_channels, "out_channels": m.out_channels, "groups": m.groups}
        elif isinstance(m, nn.Linear):
            shapes[name] = {"type": "Linear", "in_features": m.in_features, "out_features": m.out_features}
        elif isinstance(m, nn.modules.batchnorm._NormBase):
            shapes[name] = {"type": type(m).__name__, "num_features": m.num_features}
        elif isinstance(m, nn.LayerNorm):
            shapes[name] = {"type": "LayerNorm", "normalized_shape": list(m.normalized_shape)}
        elif isinstance(getattr(m, "num_attention_heads", None), int) and isinstance(getattr(m, "all_head_size", None), int):
            # BERT-style self-attention: after head pruning each layer may keep a different number of heads
            shapes[name] = {"type": "Attention", "num_attention_heads": m.num_attention_heads, "all_head_size": m.all_head_size}
    return shapes


def save_pruned(model: nn.Module, directory: str | Path, *, extra: dict | None = None) -> Path:
    """Write ``model.safetensors`` + ``pruned.json`` (layer shapes, config) into ``directory``."""
    from safetensors.torch import save as st_save

    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(f"cannot create {directory} ({exc}); choose a writable folder") from exc
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    details = getattr(model, "accelkit_details", None) or {}
    meta = {
        "format": _PLAN_FORMAT,
        "plan": [{"technique": details.get("technique", "prune-structured"), "config": details.get("config", {})}],
        "shapes": pruned_shapes(model),
        "details": {k: v for k, v in details.items() if k not in ("config",)},
        **(extra or {}),
    }
    atomic_write_bytes(directory / "model.safetensors", st_save(state))
    atomic_write_bytes(directory / "pruned.json", json.dumps(meta, indent=1).encode())
    return directory


def _set_shape_attrs(module: nn.Module, attrs: dict[str, Any]) -> None:
    for key, value in attrs.items():
        if key == "type":
            continue
        if key == "normalized_shape":
            value = tuple(value)
        setattr(module, key, value)


def load_pruned(directory: str | Path, base_model: nn.Module) -> nn.Module:
    """Rebuild a pruned model: resize ``base_model``'s layers (in place) to the saved shapes, load weights."""
    from safetensors.torch import load_file

    directory = Path(directory)
    meta_path, weights_path = directory / "pruned.json", directory / "model.safetensors"
    if not meta_path.exists() or not weights_path.exists():
        raise SchemaError(f"{directory}: expected pruned.json and model.safetensors written by save_pruned()")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != _PLAN_FORMAT:
        raise SchemaError(f"{meta_path}: format {meta.get('format')!r}, expected {_PLAN_FORMAT!r}")
    state = load_file(str(weights_path))
    modules = dict(base_model.named_modules())
    for name, attrs in meta["shapes"].items():
        if name not in modules:
            raise SchemaError(f"{meta_path}: layer {name!r} is not in the base model; load with the model it was pruned from")
        _set_shape_attrs(modules[name], attrs)
    # replace every parameter/buffer whose saved shape differs by an empty one of the saved shape
    for key, tensor in state.items():
        owner_name, _, attr = key.rpartition(".")
        owner = modules.get(owner_name)
        if owner is None:
            raise SchemaError(f"{weights_path}: tensor {key!r} has no layer in the base model")
        if attr in owner._parameters and owner._parameters[attr] is not None:
            if owner._parameters[attr].shape != tensor.shape:
                owner._parameters[attr] = nn.Parameter(torch.empty_like(tensor))
        elif attr in owner._buffers and owner._buffers[attr] is not None:
            if owner._buffers[attr].shape != tensor.shape:
                owner._buffers[attr] = torch.empty_like(tensor)
    base_model.load_state_dict(state, strict=True)
    base_model.accelkit_details = meta.get("details", {})
    return base_model.eval()


# ---------------------------------------------------------------------------- unstructured


@dataclass
class UnstructuredPruneConfig(Config):
    """Zero the ``amount`` smallest-magnitude weights across all Linear/Conv layers (global L1)."""

    amount: float = 0.5
    layer_types: tuple[str, ...] = ("Linear", "Conv1d", "Conv2d", "Conv3d")
    version: int = 1

    def __post_init__(self) -> None:
        _check_ratio("amount", self.amount)
        known = {"Linear", "Conv1d", "Conv2d", "Conv3d"}
        bad = [t for t in self.layer_types if t not in known]
        if bad or not self.layer_types:
            raise ConfigError(f"layer_types={list(self.layer_types)}: expected a non-empty subset of {sorted(known)}")
        self.layer_types = tuple(self.layer_types)


def layer_sparsity(model: nn.Module, layer_types: tuple[str, ...] = ("Linear", "Conv1d", "Conv2d", "Conv3d")) -> dict[str, float]:
    """Fraction of exactly-zero weights per layer."""
    return {
        name: float((m.weight == 0).float().mean())
        for name, m in model.named_modules()
        if type(m).__name__ in layer_types and isinstance(getattr(m, "weight", None), torch.Tensor)
    }


_DENSE_NOTE = (
    "unstructured sparsity leaves every weight tensor dense-shaped: dense CPU/GPU kernels do the same work, "
    "so expect no speed-up; it only shrinks compressed (zipped / sparse-format) size"
)


def prune_unstructured_(model: nn.Module, config: UnstructuredPruneConfig | None = None) -> dict[str, Any]:
    """Global magnitude pruning made permanent (masks folded into the weights), in place.

    Returns a report: overall and per-layer sparsity, and the note that it does not speed up dense kernels.
    """
    import torch.nn.utils.prune as tprune

    config = config or UnstructuredPruneConfig()
    targets = [
        (m, "weight")
        for _, m in model.named_modules()
        if type(m).__name__ in config.layer_types and isinstance(getattr(m, "weight", None), nn.Parameter)
    ]
    if not targets:
        raise PruningError(f"the model has no {list(config.layer_types)} layers to prune; check layer_types")
    tprune.global_unstructured(targets, pruning_method=tprune.L1Unstructured, amount=config.amount)
    for module, attr in targets:
        tprune.remove(module, attr)  # permanent: plain weight tensor, no mask or forward hook left
    per_layer = layer_sparsity(model, config.layer_types)
    total = sum(m.weight.numel() for m, _ in targets)
    zeros = sum(int((m.weight == 0).sum()) for m, _ in targets)
    report = {
        "technique": "prune-unstructured",
        "config": config.to_dict(),
        "sparsity": zeros / total,
        "layer_sparsity": per_layer,
        "note": _DENSE_NOTE,
    }
    model.accelkit_details = report
    return report


# ---------------------------------------------------------------------------- 2:4 semi-structured


@dataclass
class SemiStructuredConfig(Config):
    """2:4 sparsity (2 of every 4 weights zero) on Linear layers with both dims multiples of 64."""

    min_features: int = 64
    version: int = 1

    def __post_init__(self) -> None:
        if self.min_features < 1:
            raise ConfigError(f"min_features={self.min_features}: expected a positive integer")


def semi_structured_unavailable_reason() -> str | None:
    """Why 2:4 sparse kernels cannot run here, or None when they can."""
    if not torch.cuda.is_available():
        return "2:4 semi-structured sparsity needs a CUDA GPU with sparse tensor cores (Ampere or newer); none here"
    major, _ = torch.cuda.get_device_capability()
    if major < 8:
        return f"2:4 semi-structured sparsity needs compute capability ≥ 8.0; this GPU has {major}.x"
    return None


def mask_2_to_4(weight: torch.Tensor) -> torch.Tensor:
    """Keep the 2 largest-magnitude weights of every group of 4 along the input dimension."""
    out_f, in_f = weight.shape
    if in_f % 4:
        raise ConfigError(f"2:4 sparsity needs in_features divisible by 4, got weight shape {tuple(weight.shape)}")
    groups = weight.abs().reshape(out_f, in_f // 4, 4)
    keep = groups.topk(2, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    return weight * mask.reshape(out_f, in_f)


def apply_semi_structured_24_(model: nn.Module, config: SemiStructuredConfig | None = None) -> list[str]:
    """Convert eligible Linear weights to torch's 2:4 sparse format in place; returns their names.

    Raises DeviceUnavailableError (with the reason) where no sparse tensor cores exist.
    Run the model in fp16/bf16 on CUDA afterwards.
    """
    config = config or SemiStructuredConfig()
    reason = semi_structured_unavailable_reason()
    if reason is not None:
        raise DeviceUnavailableError(reason + "; use prune_structured for CPU speed-ups")
    from torch.sparse import to_sparse_semi_structured

    converted = []
    for name, m in model.named_modules():
        if (
            isinstance(m, nn.Linear)
            and m.weight.is_cuda
            and m.in_features % config.min_features == 0
            and m.out_features % config.min_features == 0
        ):
            dense = mask_2_to_4(m.weight.detach())
            m.weight = nn.Parameter(to_sparse_semi_structured(dense), requires_grad=False)
            converted.append(name)
    if not converted:
        raise PruningError(
            f"no CUDA Linear layer with in/out features divisible by {config.min_features}: "
            "move the model to CUDA (half precision) first"
        )
    return converted
