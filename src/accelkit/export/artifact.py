"""A model folder one ships: everything needed to run the accelerated model, nothing re-run.

An ONNX plan ships its graph; a PyTorch plan ships its architecture's ``config.json`` and its
tensors (int8 layers as their integer weights and scales), rebuilt on load from the config
with transformers — never by re-running calibration or training, never by importing code a
file names. The tokenizer (or image processor) and the pre/post-processing (padding, pooling,
normalisation, maximum length) travel with it, so ``accelkit.load(path).encode(texts)`` needs
nothing but the folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from accelkit.errors import ConfigError, SchemaError
from accelkit.tasks import get_task, list_tasks

__all__ = ["ShipError", "ShippedModel", "ship_files", "load_shipped"]


class ShipError(ConfigError):
    """A plan whose model cannot be written self-contained (the message names the step)."""


def ship_spec(workload: Any) -> dict | None:
    """What the workload says about its model's pre/post-processing, or None when it names no
    Hugging Face model folder (then only the rebuild-by-plan save is possible)."""
    fn = getattr(workload, "ship_spec", None)
    return fn() if callable(fn) else None


def _torch_model(model: Any) -> nn.Module | None:
    return model if isinstance(model, nn.Module) and hasattr(model, "config") else None


def _quantized_linears(model: nn.Module) -> dict[str, nn.Module]:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return {n: m for n, m in model.named_modules() if isinstance(m, DynamicLinear)}


def _torch_tensors(model: nn.Module) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Plain tensors of ``model`` and, per dynamic int8 Linear, its integer weight, per-channel
    scales/zero points and float bias; ShipError for any other packed or wrapped tensor."""
    quant = _quantized_linears(model)
    tensors: dict[str, torch.Tensor] = {}
    for name, mod in quant.items():
        w, b = mod.weight(), mod.bias()
        if w.qscheme() not in (torch.per_channel_affine, torch.per_channel_symmetric):
            scales, zeros = torch.tensor([w.q_scale()]), torch.tensor([w.q_zero_point()])
        else:
            scales, zeros = w.q_per_channel_scales(), w.q_per_channel_zero_points()
        tensors[f"{name}.qweight"] = w.int_repr().contiguous()
        tensors[f"{name}.qscale"] = scales.double().contiguous()
        tensors[f"{name}.qzero"] = zeros.long().contiguous()
        if b is not None:
            tensors[f"{name}.bias"] = b.detach().float().contiguous()
    prefixes = tuple(f"{n}." for n in quant)
    for key, value in model.state_dict().items():
        if key.startswith(prefixes):
            continue
        if type(value) not in (torch.Tensor, nn.Parameter) or value.is_quantized or value.layout != torch.strided:
            raise ShipError(f"tensor {key} is a {type(value).__name__} ({getattr(value, 'dtype', '?')}), which "
                            "cannot ship as plain tensors; choose a plan of casts, dynamic int8 or ONNX Runtime")
        tensors[key] = value.detach().cpu().contiguous().clone()
    return tensors, sorted(quant)


def is_graph_module(model: Any) -> bool:
    """An exported-graph runtime (ONNX Runtime or OpenVINO) whose ONNX bytes are what is saved."""
    return hasattr(model, "onnx_bytes") and callable(getattr(getattr(model, "config", None), "to_dict", None))


def runtime_fields(model: Any) -> dict:
    """plan.json's record of which runtime serves the graph, and with which settings."""
    from accelkit.export.onnx import OrtModule

    return {"ort": model.config.to_dict()} if isinstance(model, OrtModule) else {"openvino": model.config.to_dict()}


def graph_module(onnx_bytes: bytes, meta: dict) -> Any:
    """The runtime plan.json names, serving ``onnx_bytes`` (OpenVINO needs ``pip install openvino``)."""
    if "openvino" in meta:
        from accelkit._lazy import require

        require("openvino", "openvino")
        from accelkit.techniques.openvino_runtime import OpenVinoConfig, OpenVinoModule

        return OpenVinoModule(onnx_bytes, OpenVinoConfig.from_dict(meta.get("openvino") or {}),
                              details=meta.get("details"))
    from accelkit.export.onnx import OrtConfig, OrtModule

    return OrtModule(onnx_bytes, OrtConfig.from_dict(meta.get("ort") or {}), details=meta.get("details"))


def ship_files(model: Any, spec: dict, settings: Any, tmp: Path) -> dict:
    """Write the shippable files of ``model`` into ``tmp``, given the workload's ``ship_spec``;
    returns the plan.json fields (format, pipeline, runtime). ShipError when it cannot ship."""
    pipeline = {**spec["pipeline"], "settings": settings.to_dict()}
    preprocessor = spec.get("tokenizer") or spec.get("processor")
    preprocessor.save_pretrained(str(tmp))
    if is_graph_module(model):
        (tmp / "model.onnx").write_bytes(model.onnx_bytes)
        spec["config"].to_json_file(str(tmp / "config.json"))
        fmt = "hf-onnx"
        extra = runtime_fields(model)
        if spec["pipeline"].get("sentence_transformers") is not None:
            # the same folder also loads with SentenceTransformer(folder, backend="onnx")
            from accelkit.export.st_layout import write_sentence_transformers_files

            write_sentence_transformers_files(tmp, model.onnx_bytes, spec["pipeline"], graph_file="model.onnx")
    else:
        from accelkit.techniques.precision import CastInputs
        from accelkit.techniques.smoothquant import SmoothedLinear

        cast = None
        if isinstance(model, CastInputs):  # a bf16/fp16 cast: float inputs are cast at the door
            model, cast = model.model, str(model.dtype).removeprefix("torch.")
        net = _torch_model(model)
        if net is None:
            raise ShipError(f"the model is a {type(model).__name__}, not a Hugging Face module or an ONNX Runtime "
                            "session; it cannot ship self-contained (dynamic and compiled plans do not)")
        from safetensors.torch import save_file

        tensors, quantized = _torch_tensors(net)
        smoothed = sorted(n for n, m in net.named_modules() if isinstance(m, SmoothedLinear))
        config = net.config
        config.to_json_file(str(tmp / "config.json"))
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        _check_rebuilds(tmp, spec["pipeline"]["task"], tensors, quantized, smoothed)
        fmt = "hf-torch"
        extra = {"quantized_linears": quantized, "smoothed_linears": smoothed, "cast_inputs": cast}
    return {"format": fmt, "pipeline": pipeline, **extra}


def _set_child(model: nn.Module, name: str, make: Any) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, make(getattr(parent, child)))


def _rebuild_torch(root: Path, task: str, tensors: dict[str, torch.Tensor], quantized: list[str],
                   smoothed: list[str] = ()) -> nn.Module:
    """The architecture from ``root/config.json``, SmoothQuant's input scaling and the int8
    Linears put back, the tensors loaded (each in its saved dtype)."""
    from transformers import AutoConfig

    from accelkit.techniques.quantize import _to_float32
    from accelkit.techniques.smoothquant import SmoothedLinear

    spec = get_task(task)
    config = AutoConfig.from_pretrained(str(root), local_files_only=True, trust_remote_code=False)
    spec.prepare_config(config)
    import copy

    try:  # a failed attempt leaves its choice on the config: each attempt gets its own copy
        model = spec.model_class().from_config(copy.deepcopy(config), attn_implementation="sdpa")
    except (ValueError, ImportError):
        model = spec.model_class().from_config(copy.deepcopy(config))
    model.eval()
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    for name in smoothed:  # a scale of 1 here; the saved inv_scale and weights are loaded below
        _set_child(model, name, lambda lin: SmoothedLinear(lin, torch.ones(lin.in_features)))
    def int8_linear(name: str, old: nn.Module) -> nn.Module:
        q, scales, zeros = tensors[f"{name}.qweight"], tensors[f"{name}.qscale"], tensors[f"{name}.qzero"]
        if len(scales) == 1:
            weight = torch._make_per_tensor_quantized_tensor(q, float(scales[0]), int(zeros[0]))
        else:
            weight = torch._make_per_channel_quantized_tensor(q, scales, zeros, 0)
        new = DynamicLinear(old.in_features, old.out_features, dtype=torch.qint8)
        new.set_weight_bias(weight, tensors.get(f"{name}.bias"))
        new.register_forward_pre_hook(_to_float32)
        return new

    for name in quantized:
        _set_child(model, name, lambda old, n=name: int8_linear(n, old))
    # an int8 layer's tensors (saved and live) are all under its name; the rest load as they are
    int8 = tuple(f"{n}." for n in quantized)
    plain = {k: v for k, v in tensors.items() if not k.startswith(int8)}
    current = model.state_dict(keep_vars=True)
    missing = sorted(k for k in current if not k.startswith(int8) and k not in plain)
    unexpected = sorted(set(plain) - set(current))
    if unexpected or missing:
        raise SchemaError(f"{root}: the tensors do not fit config.json's architecture (unexpected "
                          f"{unexpected[:3]}, missing {missing[:3]}); re-save the model")
    with torch.no_grad():
        for key, value in plain.items():
            target = current[key]
            if target.shape != value.shape:
                raise SchemaError(f"{root}: tensor {key} has shape {tuple(value.shape)}, config.json's "
                                  f"architecture {tuple(target.shape)}; re-save the model")
            target.data = value.clone()  # keeps the saved dtype (a bf16 cast stays bf16)
    return model


def _check_rebuilds(tmp: Path, task: str, tensors: dict[str, torch.Tensor], quantized: list[str],
                    smoothed: list[str]) -> None:
    # a plan that changed the network in a way config.json does not describe (a custom block)
    # must fail here, at save time, not on the user's server
    try:
        _rebuild_torch(tmp, task, tensors, quantized, smoothed)
    except (SchemaError, AttributeError) as exc:
        raise ShipError(f"the model's architecture is not what its config.json describes ({exc}); it "
                        "cannot ship self-contained") from exc


class ShippedModel:
    """A loaded shipped folder: called like the original model (tensors in, its output out),
    with ``encode`` for embedding models as sentence-transformers has, ``generate`` for causal
    language models writing text, and ``tokenizer``."""

    def __init__(self, model: Any, pipeline: dict, tokenizer: Any, settings: Any, plan: list[dict],
                 details: dict) -> None:
        self.model = model
        self.pipeline = pipeline
        self.tokenizer = tokenizer
        self.settings = settings
        self.plan = plan
        self.details = details
        self.task = pipeline.get("task")
        self.workload = pipeline.get("workload")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from accelkit.workloads.base import autocast_context

        with torch.inference_mode(), autocast_context(self.settings):
            return self.model(*args, **kwargs)

    def encode(self, sentences: str | list[str], batch_size: int = 32, normalize_embeddings: bool = False,
               convert_to_numpy: bool = True) -> np.ndarray | torch.Tensor:
        """Embeddings of ``sentences`` (length-sorted batches padded per batch, truncated at the
        model's maximum, pooled and normalised as the model was), in input order."""
        spec = get_task(self.task)
        if spec.method != "encode":
            raise ConfigError(f"encode() is for embedding models; this one is {self.task} — call it on "
                              "tokenized inputs instead")
        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences)
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size}: expected a positive integer")
        max_length = int(self.pipeline["max_length"])
        from accelkit.workloads.text import pad_token_rows

        encoded = self.tokenizer(texts, truncation=True, max_length=max_length)  # once: sorted, then padded
        order = sorted(range(len(texts)), key=lambda i: -len(encoded["input_ids"][i]))
        out: torch.Tensor | None = None
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            inputs = pad_token_rows(self.tokenizer, encoded, idx, self.pipeline["input_names"])
            hidden = spec.pick_output(self(**inputs), self.pipeline.get("output")).float()
            emb = spec.reduce(hidden, inputs, pooling=self.pipeline.get("pooling", "mean"), width=max_length)
            if self.pipeline.get("normalize") or normalize_embeddings:
                emb = nn.functional.normalize(emb, dim=1)
            if out is None:
                out = emb.new_empty((len(texts), emb.shape[1]))
            out[torch.as_tensor(idx)] = emb
        if out is None:
            out = torch.empty((0, 0))
        result = out[0] if single else out
        return result.numpy() if convert_to_numpy else result


    def generate(self, prompts: str | list[str], max_new_tokens: int | None = None,
                 batch_size: int = 8) -> str | list[str]:
        """The text a causal language model writes after each prompt (greedy, up to
        ``max_new_tokens`` tokens or EOS; default: the number it was measured with), in input order."""
        spec = get_task(self.task)
        if spec.method != "generate":
            raise ConfigError(f"generate() is for text-generation models; this one is {self.task}")
        saved_new = int(self.pipeline.get("max_new_tokens") or 32)
        new_tokens = saved_new if max_new_tokens is None else max_new_tokens
        positions = int(self.pipeline["max_length"]) + saved_new  # prompt and new tokens share them
        max_length = positions - new_tokens
        if new_tokens < 1 or max_length < 1:
            raise ConfigError(f"max_new_tokens={new_tokens}: expected 1 to {positions - 1}")
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size}: expected a positive integer")
        from accelkit.workloads.base import autocast_context
        from accelkit.workloads.generation import generate_tokens

        spec.prepare_tokenizer(self.tokenizer, Path(str(self.workload)))
        single = isinstance(prompts, str)
        texts = [prompts] if single else list(prompts)
        written: list[str] = []
        with torch.inference_mode(), autocast_context(self.settings):
            for start in range(0, len(texts), batch_size):
                inputs = self.tokenizer(texts[start : start + batch_size], padding=True, truncation=True,
                                        max_length=max_length, return_tensors="pt")
                inputs = {k: v for k, v in inputs.items() if k in self.pipeline["input_names"]}
                new = generate_tokens(self.model, inputs, new_tokens, self.tokenizer.pad_token_id, stop_at_eos=True)
                written += self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return written[0] if single else written


def load_shipped(root: Path, meta: dict, settings: Any, plan: list[dict]) -> ShippedModel:
    """Rebuild what ``ship_files`` wrote (the checksums were verified by the caller)."""
    pipeline = meta.get("pipeline")
    if not isinstance(pipeline, dict) or not isinstance(pipeline.get("task"), str):
        raise SchemaError(f"{root}/plan.json: no 'pipeline' with a task; re-save the model")
    task = pipeline["task"]
    if task not in list_tasks():
        raise SchemaError(f"{root}/plan.json: task {task!r} is not one of {', '.join(list_tasks())}; re-save the "
                          "model with this accelkit")
    tokenizer = get_task(task).load_preprocessor(root)
    if meta["format"] == "hf-onnx":
        model: Any = graph_module((root / "model.onnx").read_bytes(), meta)
    else:
        from safetensors.torch import load_file

        quantized, smoothed = meta.get("quantized_linears") or [], meta.get("smoothed_linears") or []
        for names in (quantized, smoothed):
            if not isinstance(names, list) or not all(isinstance(q, str) for q in names):
                raise SchemaError(f"{root}/plan.json: layer names are not a list of strings; re-save the model")
        cast = meta.get("cast_inputs")
        if cast not in (None, "bfloat16", "float16"):
            raise SchemaError(f"{root}/plan.json: cast_inputs {cast!r}; expected bfloat16, float16 or none")
        try:
            tensors = load_file(str(root / "model.safetensors"))
        except Exception as exc:  # SafetensorError is not exported stably
            raise SchemaError(f"{root}/model.safetensors is not readable ({exc}); re-save the model") from exc
        try:
            model = _rebuild_torch(root, task, tensors, quantized, smoothed)
        except (AttributeError, KeyError) as exc:
            raise SchemaError(f"{root}: a quantized layer named in plan.json does not exist in config.json's "
                              f"architecture ({exc}); re-save the model") from exc
        if cast is not None:
            from accelkit.techniques.precision import CastInputs

            model = CastInputs(model, getattr(torch, cast))
    return ShippedModel(model, pipeline, tokenizer, settings, plan, meta.get("details") or {})

