"""A model folder one ships: everything needed to run the accelerated model, nothing re-run.

The model's runtime writes its files (an ONNX graph, or a PyTorch model's tensors with its
int8 / SmoothQuant / cast layers recorded), beside the architecture's ``config.json``; loading
builds the architecture from that config with transformers and hands it to the runtime —
never re-running calibration or training, never importing code a file names. The tokenizer (or
image processor) and the pre/post-processing (padding, pooling, normalisation, maximum length)
travel with it, so ``accelkit.load(path).encode(texts)`` needs nothing but the folder.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from accelkit._threads import torch_threads_beside
from accelkit.errors import ConfigError, SchemaError
from accelkit.runtimes.base import Runtime, ShipError
from accelkit.runtimes.registry import get_runtime
from accelkit.runtimes.torch_eager import CastInputs
from accelkit.tasks import get_task, list_tasks

__all__ = ["ShipError", "ShippedModel", "hf_architecture", "load_shipped", "saved_format", "ship_files",
           "ship_spec"]


def ship_spec(workload: Any) -> dict | None:
    """What the workload says about its model's pre/post-processing, or None when it names no
    Hugging Face model folder (then the folder needs the architecture passed at load)."""
    fn = getattr(workload, "ship_spec", None)
    return fn() if callable(fn) else None


def hf_architecture(root: Path, task: str) -> nn.Module:
    """The fp32 architecture ``root/config.json`` describes for ``task``, with fresh weights."""
    from transformers import AutoConfig

    spec = get_task(task)
    config = AutoConfig.from_pretrained(str(root), local_files_only=True, trust_remote_code=False)
    spec.prepare_config(config)
    try:  # a failed attempt leaves its choice on the config: each attempt gets its own copy
        model = spec.model_class().from_config(copy.deepcopy(config), attn_implementation="sdpa")
    except (ValueError, ImportError):
        model = spec.model_class().from_config(copy.deepcopy(config))
    return model.eval()


def _hf_config(runtime: Runtime, spec: dict) -> Any:
    """The config.json the shipped folder gets: a PyTorch model's own (a distilled or pruned
    model's config differs from the workload's), the workload's for a graph."""
    if not runtime.needs_baseline:
        return spec["config"]
    net = runtime.unwrap()
    net = net.model if isinstance(net, CastInputs) else net
    config = getattr(net, "config", None)
    if not callable(getattr(config, "to_json_file", None)):
        raise ShipError(f"the model is a {type(net).__name__}, not a Hugging Face module; it cannot ship "
                        "self-contained (choose a plan of casts, int8-dynamic or ONNX Runtime)")
    return config


def ship_files(runtime: Runtime, spec: dict, settings: Any, tmp: Path) -> dict:
    """Write the shippable files of the model ``runtime`` serves into ``tmp``, given the workload's
    ``ship_spec``; returns the plan.json fields (format, pipeline, the runtime's own). ShipError
    when it cannot ship, checked here by loading the folder back, not on the user's server."""
    task = spec["pipeline"]["task"]
    pipeline = {**spec["pipeline"], "settings": settings.to_dict()}
    config = _hf_config(runtime, spec)
    preprocessor = spec.get("tokenizer") or spec.get("processor")
    preprocessor.save_pretrained(str(tmp))
    config.to_json_file(str(tmp / "config.json"))
    fields = runtime.save(tmp)
    if runtime.model_file == "model.onnx" and spec["pipeline"].get("sentence_transformers") is not None:
        # the same folder also loads with SentenceTransformer(folder, backend="onnx")
        from accelkit.export.st_layout import write_sentence_transformers_files

        write_sentence_transformers_files(tmp, (tmp / "model.onnx").read_bytes(), spec["pipeline"],
                                          graph_file="model.onnx")
    if runtime.needs_baseline:
        # a plan that changed the network in a way config.json does not describe (a custom block)
        # must fail here, at save time
        try:
            type(runtime).load(tmp, fields, baseline=hf_architecture(tmp, task))
        except SchemaError as exc:
            raise ShipError(f"the model's architecture is not what its config.json describes ({exc}); it "
                            "cannot ship self-contained") from exc
    return {"format": f"hf-{saved_format(type(runtime))}", "pipeline": pipeline, **fields}


def saved_format(runtime: type[Runtime]) -> str:
    """plan.json's ``format`` for what ``runtime`` writes: "onnx" or "openvino" for a graph,
    "torch" for tensors."""
    if runtime.model_file.endswith(".onnx"):
        return "onnx"
    return "openvino" if runtime.model_file.endswith(".xml") else "torch"


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
        out: torch.Tensor | None = None
        with torch_threads_beside(self.model):
            for _, idx, inputs in self.padded_batches(texts, max_length, batch_size, sort_by_length=True):
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

    def settle(self) -> None:
        """Serve as in a long run from now on: a ``static-shapes`` plan compiles every batch shape
        met so far and each new one on meeting it, rather than once its calls pay for the compile
        (for a server, after a warm-up call). The plan's quality was scored on both compiles, the
        worse reported, so it holds before and after."""
        if isinstance(self.model, Runtime):
            self.model.settle()

    def padded_batches(self, texts: list[str], max_length: int, batch_size: int, *,
                        sort_by_length: bool) -> Iterator[tuple[int, list[int], dict[str, torch.Tensor]]]:
        """(position of the batch's first text in the order, the texts' indices, padded inputs) for
        ``batch_size`` texts at a time, longest first when ``sort_by_length``; each text is
        tokenized once, truncated at ``max_length``, padded as the plan was measured (to the
        batch's longest, or to the bucket length holding it for ``static-shapes``). The runtime is
        told the batches' shapes first (``Runtime.expect_calls``)."""
        from accelkit.workloads.text import pad_token_rows, padded_length

        encoded = self.tokenizer(texts, truncation=True, max_length=max_length)
        order = list(range(len(texts)))
        if sort_by_length:
            order.sort(key=lambda i: -len(encoded["input_ids"][i]))
        cap = max_length if getattr(self.settings, "padding", None) == "bucketed" else None
        batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        if isinstance(self.model, Runtime):  # the batches' shapes, for a runtime that prepares per shape
            self.model.expect_calls((len(idx), padded_length(max(len(encoded["input_ids"][i]) for i in idx), cap))
                                    for idx in batches)
        for n, idx in enumerate(batches):
            yield n * batch_size, idx, pad_token_rows(self.tokenizer, encoded, idx, self.pipeline["input_names"],
                                                      bucket_cap=cap)

    def generate(self, prompts: str | list[str], max_new_tokens: int | None = None,
                 batch_size: int | None = None, seed: int | None = None,
                 eos_token_id: int | list[int] | None = None) -> str | list[str]:
        """The text a causal language model writes after each prompt (up to ``max_new_tokens``
        tokens or EOS; default: the number it was measured with), in input order, ``batch_size``
        prompts a call (default: the batch size the plan was chosen at, so a latency plan
        writes one prompt at a time, as it was measured), in length-sorted batches where the plan
        was measured on them (``dynamic-padding``). Greedy, or with
        ``seed``, sampled with the model's own temperature, top-k and top-p, torch's generator
        seeded with ``seed`` plus the position of the batch's first prompt before each batch (the
        same seed writes the same text, and batches do not repeat each other's draws).
        ``eos_token_id``: the token id(s) that end a prompt's text, in place of the model's EOS
        (as ``generate`` takes them); a plan on OpenVINO stops computing a row once it ends."""
        spec = get_task(self.task)
        if spec.method != "generate":
            raise ConfigError(f"generate() is for text-generation models; this one is {self.task}")
        saved_new = int(self.pipeline.get("max_new_tokens") or 32)
        new_tokens = saved_new if max_new_tokens is None else max_new_tokens
        positions = int(self.pipeline["max_length"]) + saved_new  # prompt and new tokens share them
        max_length = positions - new_tokens
        if new_tokens < 1 or max_length < 1:
            raise ConfigError(f"max_new_tokens={new_tokens}: expected 1 to {positions - 1}")
        if batch_size is None:
            batch_size = int(getattr(self.settings, "batch_size", None) or 8)
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size}: expected a positive integer")
        if eos_token_id is not None:
            ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
            if not ids or any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(self.tokenizer)
                              for i in ids):
                raise ConfigError(f"eos_token_id={eos_token_id!r}: expected token ids from 0 to "
                                  f"{len(self.tokenizer) - 1} (tokenizer.convert_tokens_to_ids gives them)")
        from accelkit.workloads.base import autocast_context
        from accelkit.workloads.generation import generate_tokens

        spec.prepare_tokenizer(self.tokenizer, Path(str(self.workload)))
        single = isinstance(prompts, str)
        texts = [prompts] if single else list(prompts)
        if not texts:
            return []
        written: list[str] = [""] * len(texts)
        # length-sorted where the plan was measured on length-sorted batches
        sort = bool(getattr(self.settings, "sort_by_length", False))
        with torch.inference_mode(), autocast_context(self.settings):
            for start, idx, inputs in self.padded_batches(texts, max_length, batch_size, sort_by_length=sort):
                new = generate_tokens(self.model, inputs, new_tokens, self.tokenizer.pad_token_id, stop_at_eos=True,
                                      sample_seed=None if seed is None else seed + start, eos_token_id=eos_token_id)
                for i, text in zip(idx, self.tokenizer.batch_decode(new, skip_special_tokens=True), strict=True):
                    written[i] = text
        return written[0] if single else written


def load_shipped(root: Path, meta: dict, settings: Any, plan: list[dict]) -> ShippedModel:
    """Load what ``ship_files`` wrote (the checksums were verified by the caller)."""
    pipeline = meta.get("pipeline")
    if not isinstance(pipeline, dict) or not isinstance(pipeline.get("task"), str):
        raise SchemaError(f"{root}/plan.json: no 'pipeline' with a task; re-save the model")
    task = pipeline["task"]
    if task not in list_tasks():
        raise SchemaError(f"{root}/plan.json: task {task!r} is not one of {', '.join(list_tasks())}; re-save the "
                          "model with this accelkit")
    tokenizer = get_task(task).load_preprocessor(root)
    runtime = get_runtime(meta["runtime"])
    model = runtime.load(root, meta, baseline=hf_architecture(root, task) if runtime.needs_baseline else None)
    return ShippedModel(model.unwrap(), pipeline, tokenizer, settings, plan, meta.get("details") or {})
