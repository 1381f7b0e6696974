"""Finding a model's sequence of blocks (``encoder.layer``, ``blocks``, ``transformer.h`` …), the
modules after it and a BERT encoder's layers, and calling blocks and models on a batch: the one
copy early exit, layer skip, routed depth, head pruning and distillation use."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from accelkit.errors import ConfigError

# containers searched, in order, when the config does not name the blocks
_KNOWN_CONTAINERS = ("blocks", "encoder.layer", "layers", "transformer.h", "model.layers", "h")
_KNOWN_FINALS = (("head",), ("ln_f", "lm_head"), ("norm", "lm_head"), ("classifier",))


class BlocksNotFoundError(ConfigError):
    """The model's sequence of blocks could not be found or was not called in order."""


def _get(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def find_blocks(model: nn.Module, block_names: Sequence[str] | None = None) -> list[str]:
    """Module paths of the model's blocks, in call order.

    Searches ``blocks``, ``encoder.layer``, ``layers``, ``transformer.h`` … unless
    ``block_names`` declares them. Raises BlocksNotFoundError naming how to declare them.
    """
    if block_names:
        missing = [n for n in block_names if _get(model, n) is None]
        if missing:
            raise BlocksNotFoundError(
                f"block_names {missing} are not submodules of {type(model).__name__}; "
                f"declare existing paths, e.g. {_example_names(model)}"
            )
        return list(block_names)
    for container in _KNOWN_CONTAINERS:
        mod = _get(model, container)
        if isinstance(mod, (nn.Sequential, nn.ModuleList)) and len(mod) >= 2:
            return [f"{container}.{i}" for i in range(len(mod))]
    raise BlocksNotFoundError(
        f"cannot find a sequence of blocks in {type(model).__name__} (looked for "
        f"{list(_KNOWN_CONTAINERS)}); declare them with EarlyExitConfig(block_names=[...]), "
        f"a list of block module names in call order, e.g. {_example_names(model)}"
    )


def bert_encoder_layers(model: nn.Module) -> nn.ModuleList | None:
    """``model.encoder.layer`` of a BERT-style encoder (transformers' BertModel and kin), or None.

    The one lookup of encoder layers; callers raise their own error naming what they needed.
    """
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    return layers if isinstance(layers, nn.ModuleList) else None


def _example_names(model: nn.Module) -> list[str]:
    names = [n for n, _ in model.named_children()][:3]
    return names or ["features.0", "features.1"]


def _find_finals(model: nn.Module, final_names: Sequence[str] | None) -> list[str]:
    if final_names is not None:
        missing = [n for n in final_names if _get(model, n) is None]
        if missing:
            raise BlocksNotFoundError(f"final_names {missing} are not submodules of {type(model).__name__}")
        return list(final_names)
    for names in _KNOWN_FINALS:
        if all(_get(model, n) is not None for n in names):
            return list(names)
    return []  # e.g. a transformers encoder: the last block's output is the output


def _slice_rows(value: Any, keep: torch.Tensor, batch: int) -> Any:
    if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == batch and batch > 1:
        return value[keep]
    return value


def _first(value: Any) -> torch.Tensor:
    """The main tensor of a block's or model's output (tensor, tuple, or transformers ModelOutput)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        return value[0]
    if isinstance(value, dict):  # ModelOutput: ordered, first field is the hidden state / logits
        return next(iter(value.values()))
    return value


def _as_call(inputs: Any) -> tuple[tuple, dict]:
    """A batch as (args, kwargs): a dict is keyword arguments, anything else one positional."""
    return ((), inputs) if isinstance(inputs, dict) else ((inputs,), {})


def _call(fn: Callable, inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return fn(**inputs)
    if isinstance(inputs, (tuple, list)):
        return fn(*inputs)
    return fn(inputs)
