"""A transformers causal LM as a stateful OpenVINO graph: one call reads new tokens, appends their
keys and values to a cache kept inside the infer request, and returns each row's last logits.

The cache as graph state (not inputs and outputs) is what lets OpenVINO's CPU plugin fuse each
layer's cache append and attention into one node; the ``beam_idx`` gather before each cache read
is the pattern that fusion matches (greedy decoding passes ``0..batch-1``).
"""

from __future__ import annotations

import contextlib
import inspect
import os
import tempfile
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from accelkit._lazy import require
from accelkit.errors import ConfigError

__all__ = ["CACHE_INPUTS", "export_stateful_lm"]

# the graph's inputs besides the cache state
CACHE_INPUTS = ("input_ids", "attention_mask", "position_ids", "beam_idx")


def _cache_from(past: tuple[torch.Tensor, ...]) -> Any:
    """A transformers ``DynamicCache`` holding ``past`` (keys, values per layer). Its layers are
    filled directly: ``update`` would concatenate onto an empty tensor, which OpenVINO's converter
    rejects."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache()
    for i in range(len(past) // 2):
        if len(cache.layers) <= i:
            cache.layers.append(DynamicLayer())
        layer = cache.layers[i]
        layer.keys, layer.values = past[2 * i], past[2 * i + 1]
        layer.dtype, layer.device, layer.is_initialized = past[0].dtype, past[0].device, True
    return cache


class _Step(nn.Module):
    """The traced call: new tokens over the cache given as tensors, returning each row's logits at
    its last position (or at every new position, ``all_logits``) and the grown cache. The argmax is left to the caller: OpenVINO's TopK over
    the vocabulary cost 14% of a decode step (0.47 ms at batch 8 over 4,096 tokens), numpy's a few
    microseconds."""

    def __init__(self, model: nn.Module, cache_arg: str, last_logits: dict[str, int], cache_position: bool,
                 all_logits: bool = False) -> None:
        super().__init__()
        self.model, self.cache_arg, self.last_logits = model, cache_arg, last_logits
        self.cache_position, self.all_logits = cache_position, all_logits

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        extra: dict[str, Any] = dict(self.last_logits)
        if self.cache_position:
            # from the tensors' sizes, which tracing follows; a model computing it itself from the
            # cache's length as a Python int would trace the example's length as a constant
            extra["cache_position"] = torch.arange(input_ids.shape[1]) + past[0].shape[-2]
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         use_cache=True, **extra, **{self.cache_arg: _cache_from(past)})
        present = []
        for layer in out.past_key_values.layers:
            present += [layer.keys, layer.values]
        return (out.logits if self.all_logits else out.logits[:, -1], *present)


@contextlib.contextmanager
def _traceable_masks() -> Iterator[None]:
    """Within the block, transformers 4's sdpa masks are built by broadcasting the mask function
    over index tensors, never ``torch.vmap`` (whose expansions tracing records at the example's
    sizes), and never skipped for an all-ones mask (a skip traced from the example would hold for
    every later call). transformers 5 builds them so already and is left as it is."""
    try:
        from transformers import masking_utils
    except ImportError:
        yield
        return
    mapping = getattr(getattr(masking_utils, "ALL_MASK_ATTENTION_FUNCTIONS", None), "_global_mapping", None)
    if not hasattr(masking_utils, "sdpa_mask_older_torch") or mapping is None or "sdpa" not in mapping:
        yield
        return

    def sdpa_mask(batch_size: int, cache_position: torch.Tensor, kv_length: int, kv_offset: int = 0,
                  mask_function: Any = masking_utils.causal_mask_function, attention_mask: torch.Tensor | None = None,
                  **kwargs: Any) -> torch.Tensor:
        device = cache_position.device
        rows = torch.arange(attention_mask.shape[0] if attention_mask is not None else batch_size, device=device)
        kv = torch.arange(kv_length, device=device) + kv_offset
        mask = mask_function(rows[:, None, None, None], 0, cache_position[None, None, :, None], kv[None, None, None, :])
        padding = masking_utils.prepare_padding_mask(attention_mask, kv_length, kv_offset)
        if padding is not None:
            mask = mask & padding[:, None, None, :].bool()
        return mask
    own = mapping["sdpa"]
    mapping["sdpa"] = sdpa_mask
    try:
        yield
    finally:
        mapping["sdpa"] = own


def _cache_shape(model: nn.Module, step: _Step) -> tuple[int, int, int]:
    """(layers, key/value heads, head size) of ``model``'s cache, read from a two-token eager call."""
    with torch.no_grad():
        ids = torch.zeros(1, 2, dtype=torch.long)
        out = step.model(input_ids=ids, use_cache=True)
    layers = out.past_key_values.layers
    _, heads, _, size = layers[0].keys.shape
    return len(layers), heads, size


def export_stateful_lm(model: nn.Module, *, all_logits: bool = False) -> Any:
    """``model`` (a transformers causal LM, fp32, eval) as an ``openvino.Model`` whose inputs are
    ``CACHE_INPUTS`` and whose one output, ``logits``, is each row's logits at its last position
    (batch, vocabulary), or with ``all_logits`` at each position the call reads (batch, new tokens,
    vocabulary: what a call that verifies drafted tokens needs).
    The key/value cache is graph state: reset it (``InferRequest.reset_state``) before each batch
    of prompts, then call with the prompts and with each new token in turn, with
    ``attention_mask`` over everything read so far and ``position_ids`` counting real tokens."""
    ov = require("openvino", "openvino")
    from openvino import opset13
    from openvino._offline_transformations import apply_make_stateful_transformation

    params = inspect.signature(model.forward).parameters
    cache_arg = "cache" if "cache" in params else "past_key_values"
    keep = {"logits_to_keep": 0 if all_logits else 1} if "logits_to_keep" in params else {}
    step = _Step(model, cache_arg, keep, "cache_position" in params, all_logits).eval()
    try:
        layers, heads, size = _cache_shape(model, step)
    except Exception as exc:
        raise ConfigError(f"openvino-generate: {type(model).__name__} did not run with a dynamic key/value cache "
                          f"({type(exc).__name__}: {exc}); it needs a transformers causal LM") from exc
    # a left-padded example, so the traced masking is the general one (no all-ones shortcut)
    batch, new, old = 2, 3, 2
    mask = torch.ones(batch, old + new, dtype=torch.long)
    mask[1, 0] = 0
    example = (torch.randint(1, 8, (batch, new)), mask, (mask.cumsum(-1) - 1).clamp(min=0)[:, old:],
               *(torch.zeros(batch, heads, old, size) for _ in range(2 * layers)))
    with _traceable_masks(), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # static head counts and sizes in the declared shapes: OpenVINO's rotary and attention
        # fusions match on them (all-dynamic cache shapes leave the rotary arithmetic unfused)
        shapes = [([-1, -1], ov.Type.i64)] * 3 + [([-1, heads, -1, size], ov.Type.f32)] * (2 * layers)
        graph = ov.convert_model(step, example_input=example, input=shapes)
    for i, port in enumerate(graph.inputs):
        port.get_tensor().set_names({CACHE_INPUTS[i] if i < 3 else f"past_{i - 3}"})
    for i, port in enumerate(graph.outputs):
        port.get_tensor().set_names({"logits" if i == 0 else f"present_{i - 1}"})
    beam = opset13.parameter([-1], np.int32, name="beam_idx")
    beam.output(0).get_tensor().set_names({"beam_idx"})
    for i in range(2 * layers):
        past = graph.input(f"past_{i}").get_node()
        readers = list(past.output(0).get_target_inputs())
        gathered = opset13.gather(past, beam, opset13.constant(0))
        for reader in readers:
            reader.replace_source_output(gathered.output(0))
    graph.add_parameters([beam])
    _additive_masks(graph)
    apply_make_stateful_transformation(graph, {f"past_{i}": f"present_{i}" for i in range(2 * layers)})
    # each cache starts empty for the batch the prompts have: (batch, heads, 0, size)
    rows = opset13.gather(opset13.shape_of(graph.input("input_ids"), output_type="i64"), opset13.constant([0]),
                          opset13.constant(0))
    fixed = [opset13.constant(np.array([n], dtype=np.int64)) for n in (heads, 0, size)]
    for op in graph.get_ops():
        if op.get_type_name() == "ReadValue":
            shape = opset13.concat([rows, *fixed], axis=0)
            op.set_arguments([opset13.broadcast(opset13.constant(0.0, dtype=op.get_output_element_type(0)), shape)])
    graph.validate_nodes_and_infer_types()
    return _serialized(graph)


def _additive_masks(graph: Any) -> None:
    """Give every attention a float mask (0 where a key is read, the float minimum where not) in
    place of the boolean one transformers builds: the CPU plugin's fused cache-and-attention kernel
    took twice as long with a boolean mask (0.74 against 0.38 ms of a batch-8 decode step). The
    minimum, not -inf, as transformers' own float masks: a query row with no key to read (left
    padding) then softmaxes to finite values instead of NaN, which the next layer would spread."""
    from openvino import opset13

    boolean = require("openvino", "openvino").Type.boolean
    additive: dict[Any, Any] = {}
    for op in graph.get_ordered_ops():
        if op.get_type_name() != "ScaledDotProductAttention" or op.get_input_size() < 4:
            continue
        mask = op.input_value(3)
        if mask.get_element_type() != boolean:
            continue
        if mask not in additive:
            additive[mask] = opset13.select(mask, opset13.constant(np.float32(0.0)),
                                            opset13.constant(np.finfo(np.float32).min)).output(0)
        op.input(3).replace_source_output(additive[mask])


def _serialized(graph: Any) -> Any:
    """``graph`` written out as OpenVINO's IR and read back: the CPU plugin fuses each layer's
    rotary embedding into one kernel only in a graph read from IR (12 RoPE nodes for 6 layers,
    none in the converter's graph as it is; measured with openvino 2026.4). Read from the file,
    OpenVINO maps the weights instead of copying them, and the mapping outlives the file: the
    graph holds no second copy of the weights in the process's own memory (a random 156M-parameter
    Llama, ``benchmarks/explore/ov_lm_export_memory.py``: 956 MB of anonymous memory after the
    export and a 1,104 MB peak, against 1,551 and 2,290 MB with the IR read into memory; the
    model alone, 880)."""
    ov = require("openvino", "openvino")
    # where an open file cannot be removed (Windows), the folder stays behind rather than fail
    with tempfile.TemporaryDirectory(prefix="accelkit-ov-lm-", ignore_cleanup_errors=True) as tmp:
        path = os.path.join(tmp, "model.xml")
        ov.save_model(graph, path, compress_to_fp16=False)
        return ov.Core().read_model(path)
