"""``--model`` and ``--data``: turn a user's model (a Hugging Face or sentence-transformers folder,
or a ``package.module:function`` returning an ``nn.Module``) and data file into a workload.

The protocol for ``module:function``: the function takes no arguments and returns an
``nn.Module``, or a dict ``{"model": nn.Module, "tokenizer": <HF tokenizer>?, "task": str?,
"max_length": int?}``. Text data needs the tokenizer; tensor data (.npy/.safetensors) is fed
as one input tensor. Outputs may be tensors, tuples or Hugging Face ``ModelOutput``s.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from accelkit.data.user_files import UserData, read_data_file, split_data
from accelkit.errors import ConfigError, ModelFolderError, WorkloadImportError
from accelkit.workloads.base import RunSettings, TensorWorkload, Workload
from accelkit.workloads.hf_model import (
    MODEL_TASKS,
    HFTextWorkload,
    LabelledTexts,
    _label_ids,
    infer_task,
    load_config,
    load_hf_model,
    model_max_length,
    pick_output,
    read_sentence_config,
)

__all__ = ["HFImageWorkload", "workload_from_model"]


def workload_from_model(
    model: str | Path | nn.Module,
    data: str | Path | UserData,
    *,
    task: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    calib_size: int | None = None,
    eval_size: int | None = None,
    output: str | None = None,
) -> Workload:
    """A workload for the user's own ``model`` on their ``data`` (see the module docstring).

    ``data`` is split by a seeded permutation into calibration (tuning, never scored) and
    held-out parts (scored, never tuned on); the sizes are in ``workload.split_report``.
    """
    if task is not None and task not in MODEL_TASKS:
        raise ConfigError(f"--task {task!r}: expected one of {', '.join(MODEL_TASKS)}")
    user = data if isinstance(data, UserData) else read_data_file(data, text_column=text_column,
                                                                  label_column=label_column)
    calib, held, report = split_data(user, calib_size=calib_size, eval_size=eval_size)
    if isinstance(model, nn.Module):
        return _module_workload("model", model, None, task, calib, held, report, output, {})
    spec = str(model)
    if ":" in spec and not Path(spec).exists():
        made = _call_factory(spec)
        if isinstance(made, nn.Module):
            made = {"model": made}
        if not (isinstance(made, dict) and isinstance(made.get("model"), nn.Module)):
            raise WorkloadImportError(f"--model {spec}: the function returned {type(made).__name__}; expected an "
                                      "nn.Module or a dict with 'model' (and 'tokenizer' for text data)")
        return _module_workload(spec, made["model"], made.get("tokenizer"), task or made.get("task"), calib,
                                held, report, output, made)
    return _folder_workload(Path(spec), task, calib, held, report, output)


def _call_factory(spec: str) -> Any:
    module_name, _, fn_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise WorkloadImportError(f"--model {spec}: cannot import {module_name!r} ({type(exc).__name__}: {exc}); "
                                  "check it is on PYTHONPATH") from exc
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise WorkloadImportError(f"--model {spec}: {module_name} has no callable {fn_name!r}")
    try:
        return fn()
    except Exception as exc:
        raise WorkloadImportError(f"--model {spec}: {fn_name}() raised {type(exc).__name__}: {exc}") from exc


def _texts(part: UserData, labels: list[int] | None) -> LabelledTexts:
    return LabelledTexts.of(list(part.items), labels)


def _folder_workload(folder: Path, task: str | None, calib: UserData, held: UserData, report: dict,
                     output: str | None) -> Workload:
    sentence = read_sentence_config(folder) if folder.is_dir() else None
    hf_dir = folder / sentence.transformer_path if sentence else folder
    config = load_config(hf_dir)
    task = task or infer_task(config, sentence)
    source = {"model": str(folder), "task": task, "model_type": getattr(config, "model_type", None)}
    if task == "image-classification":
        if calib.kind != "images":
            raise ConfigError(f"--task image-classification needs a folder of images as --data, not {calib.kind} "
                              f"({calib.source})")
        processor = _load_processor(hf_dir)
        return HFImageWorkload(folder.name, lambda: load_hf_model(hf_dir, task, config), processor, calib, held,
                               labels_of=lambda raw: _label_ids(raw, config, calib.source),
                               split_report=report, source=source, hf_config=config)
    if calib.kind != "text":
        raise ConfigError(f"--task {task} needs text as --data (.txt, .jsonl, .csv), not {calib.kind} "
                          f"({calib.source})")
    tokenizer = _load_tokenizer(hf_dir)
    if task == "causal-lm":
        _pad_with_eos(tokenizer, folder)
    labels = (None, None)
    if task == "text-classification" and calib.labels is not None:
        labels = (_label_ids(calib.labels, config, calib.source), _label_ids(held.labels, config, held.source))
    return HFTextWorkload(
        folder.name, lambda: load_hf_model(hf_dir, task, config), tokenizer, task,
        _texts(calib, labels[0]), _texts(held, labels[1]),
        max_length=model_max_length(tokenizer, config, sentence), sentence=sentence, output=output,
        split_report=report, source={**source, "sentence_transformers": sentence.to_dict() if sentence else None},
        config=config,
    )


def _load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except (ValueError, OSError, KeyError, TypeError) as exc:
        raise ModelFolderError(f"--model {folder}: no usable tokenizer files ({type(exc).__name__}); save the "
                               "tokenizer into the folder with tokenizer.save_pretrained") from exc


def _load_processor(folder: Path) -> Any:
    from transformers import AutoImageProcessor

    try:
        return AutoImageProcessor.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except (ValueError, OSError, KeyError, TypeError) as exc:
        raise ModelFolderError(f"--model {folder}: no usable image processor (preprocessor_config.json); save "
                               "it into the folder with processor.save_pretrained") from exc


def _pad_with_eos(tokenizer: Any, folder: Path) -> None:
    # GPT-2-style tokenizers have no pad token; padding with EOS under the attention mask is what
    # Hugging Face's own examples do, and the mask keeps it out of every score
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelFolderError(f"--model {folder}: the tokenizer has neither a pad nor an EOS token; set "
                                   "tokenizer.pad_token and save it")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"


def _module_workload(spec: str, module: nn.Module, tokenizer: Any, task: str | None, calib: UserData,
                     held: UserData, report: dict, output: str | None, made: dict) -> Workload:
    if calib.kind == "text":
        if tokenizer is None:
            raise ConfigError(f"--model {spec}: text --data needs a tokenizer; return {{'model': ..., "
                              "'tokenizer': AutoTokenizer...}} from the function, or pass tensors (.npy)")
        task = task or "feature-extraction"
        if task == "causal-lm":
            _pad_with_eos(tokenizer, Path(spec))
        max_len = made.get("max_length") or model_max_length(tokenizer, getattr(module, "config", None), None)
        return HFTextWorkload(spec, lambda: module, tokenizer, task, _texts(calib, None), _texts(held, None),
                              max_length=int(max_len), output=output, split_report=report,
                              source={"model": spec, "task": task})
    if calib.kind != "tensors":
        raise ConfigError(f"--model {spec}: image folders need a Hugging Face image model folder; pass "
                          "tensors (.npy/.safetensors) for a module:function model")
    workload = OutputPickingTensorWorkload(
        spec, lambda: module, held.tensors["inputs"], held.tensors.get("labels"),
        calib_inputs=calib.tensors["inputs"], calib_labels=calib.tensors.get("labels"),
    )
    workload.task, workload.output, workload.split_report = task or "tensor", output, report
    return workload


class OutputPickingTensorWorkload(TensorWorkload):
    """TensorWorkload for any model output: tensors, tuples, dicts, Hugging Face ModelOutputs."""

    task: str = "tensor"
    output: str | None = None
    split_report: dict = {}

    def forward(self, model: Callable, inputs: torch.Tensor) -> torch.Tensor:
        return pick_output(model(inputs), self.task, self.output)


class HFImageWorkload(Workload):
    """A Hugging Face image classifier on a folder of images; quality is top-1 agreement with
    the fp32 model (and accuracy when the images sit in class sub-folders)."""

    primary_metric = "top1_agreement"
    item_unit = "images"
    default_batch_size = 32

    def __init__(self, name: str, model_fn: Callable[[], nn.Module], processor: Any, calib: UserData,
                 held: UserData, *, labels_of: Callable[[list], list[int] | None],
                 split_report: dict | None = None, source: dict | None = None, hf_config: Any = None) -> None:
        self.name = name
        self._model_fn = model_fn
        self.processor = processor
        self._calib, self._held = calib, held
        self._labels_of = labels_of
        self.split_report = dict(split_report or {})
        self.source = dict(source or {})
        self.task = "image-classification"
        self.hf_config = hf_config

    def ship_spec(self) -> dict | None:
        return {"processor": self.processor, "config": self.hf_config,
                "pipeline": {"workload": self.name, "task": self.task, "input_names": ["pixel_values"]}}

    def offers(self) -> frozenset[str]:
        return frozenset({"onnx-exportable"})

    def build_model(self) -> nn.Module:
        return self._model_fn().eval()

    def _part(self, part: UserData, limit: int | None) -> UserData:
        n = len(part) if limit is None else min(limit, len(part))
        return part.subset(list(range(n)))

    def eval_data(self, limit: int | None = None) -> UserData:
        return self._part(self._held, limit)

    def calib_data(self, limit: int | None = None) -> UserData:
        return self._part(self._calib, limit)

    def n_items(self, data: UserData) -> int:
        return len(data)

    def data_report(self, data: UserData, settings: RunSettings) -> dict[str, Any]:
        return {"items": len(data), "split": self.split_report}

    def batches(self, data: UserData, settings: RunSettings) -> Iterator[tuple[Any, Any]]:
        from PIL import Image

        for start in range(0, len(data), settings.batch_size):
            paths = data.items[start : start + settings.batch_size]
            images = []
            for p in paths:
                with Image.open(p) as im:
                    images.append(im.convert("RGB"))
            pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
            yield {"pixel_values": pixels.to(settings.device)}, None

    def forward(self, model: Callable, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return pick_output(model(**inputs), self.task)

    def quality(self, outputs: torch.Tensor, reference: torch.Tensor, data: UserData) -> dict[str, float]:
        pred, ref = outputs.argmax(-1).cpu(), reference.argmax(-1).cpu()
        found = {"top1_agreement": float((pred == ref).float().mean())}
        labels = self._labels_of(data.labels) if data.labels is not None else None
        if labels is not None:
            found["accuracy"] = float((pred == torch.tensor(labels)).float().mean())
        return found
