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
from accelkit.tasks import TaskSpec, get_task, infer_task, list_tasks, pick_output
from accelkit.workloads.base import RunSettings, TensorWorkload, Workload
from accelkit.workloads.hf_model import (
    HFTextWorkload,
    LabelledTexts,
    load_config,
    load_hf_model,
    model_max_length,
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
    max_new_tokens: int | None = None,
    draft: str | Path | None = None,
    sample_seed: int | None = None,
) -> Workload:
    """A workload for the user's own ``model`` on their ``data`` (see the module docstring).

    ``data`` is split by a seeded permutation into calibration (tuning, never scored) and
    held-out parts (scored, never tuned on); the sizes are in ``workload.split_report``.
    ``max_new_tokens`` and ``draft`` (a smaller model folder of the same tokenizer, for
    speculative decoding) and ``sample_seed`` (sample with that seed instead of greedy decoding) are
    for ``task="text-generation"``.
    """
    if task is not None:
        get_task(task)  # an unknown task is refused before the data is read
    generation = {"max_new_tokens": max_new_tokens, "draft": draft, "sample_seed": sample_seed}
    if max_new_tokens is not None and (isinstance(max_new_tokens, bool) or max_new_tokens < 1):
        raise ConfigError(f"--max-new-tokens {max_new_tokens}: expected a positive number of tokens to write")
    user = data if isinstance(data, UserData) else read_data_file(data, text_column=text_column,
                                                                  label_column=label_column)
    calib, held, report = split_data(user, calib_size=calib_size, eval_size=eval_size)
    if isinstance(model, nn.Module):
        _check_generation_options(task, generation)
        return _module_workload("model", model, None, task, calib, held, report, output, {})
    spec = str(model)
    if ":" in spec and not Path(spec).exists():
        made = _call_factory(spec)
        if isinstance(made, nn.Module):
            made = {"model": made}
        if not (isinstance(made, dict) and isinstance(made.get("model"), nn.Module)):
            raise WorkloadImportError(f"--model {spec}: the function returned {type(made).__name__}; expected an "
                                      "nn.Module or a dict with 'model' (and 'tokenizer' for text data)")
        task = task or made.get("task")
        _check_generation_options(task, generation)
        if task == "text-generation":
            return _module_generation_workload(spec, made, calib, held, report, generation)
        return _module_workload(spec, made["model"], made.get("tokenizer"), task, calib, held, report, output,
                                made)
    _check_generation_options(task, generation)
    if task == "text-generation":
        return _folder_generation_workload(Path(spec), calib, held, report, generation)
    return _folder_workload(Path(spec), task, calib, held, report, output)


def _check_generation_options(task: str | None, generation: dict) -> None:
    flags = {"sample_seed": "--do-sample"}
    named = [flags.get(k, f"--{k.replace('_', '-')}") for k, v in generation.items() if v is not None]
    if named and task != "text-generation":
        raise ConfigError(f"{' and '.join(named)} go with --task text-generation; add it or drop them")


def _generation_prompts(calib: UserData, held: UserData) -> tuple[list[str], list[str]]:
    if calib.kind != "text":
        raise ConfigError(f"--task text-generation needs prompts as --data (.txt one a line, or .jsonl with "
                          f"'prompt'), not {calib.kind} ({calib.source})")
    return list(calib.items), list(held.items)


def _generation_tokenizer(tokenizer: Any, where: Path) -> bool:
    """Prepare ``tokenizer`` for batched generation; True when its pad token was set to EOS."""
    had_pad = tokenizer.pad_token is not None
    get_task("text-generation").prepare_tokenizer(tokenizer, where)
    return not had_pad


def _folder_generation_workload(folder: Path, calib: UserData, held: UserData, report: dict,
                                generation: dict) -> Workload:
    from accelkit.workloads.generation import (
        DEFAULT_MAX_NEW_TOKENS,
        GenerationWorkload,
        check_causal_lm,
        check_same_tokenizer,
    )

    config = load_config(folder)
    check_causal_lm(folder, config)
    prompts = _generation_prompts(calib, held)
    spec = get_task("text-generation")
    tokenizer = _load_preprocessor(spec, folder)
    pad_set = _generation_tokenizer(tokenizer, folder)
    draft = generation.get("draft")
    draft_dir = Path(draft) if draft is not None else None
    if draft_dir is not None:
        draft_config = load_config(draft_dir)
        check_causal_lm(draft_dir, draft_config)
        check_same_tokenizer(tokenizer, _load_preprocessor(spec, draft_dir), draft_dir)
    max_new = generation.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS
    return GenerationWorkload(
        folder.name, None, tokenizer, *prompts, positions=model_max_length(tokenizer, config, None),
        max_new_tokens=max_new, hf_dir=folder, config=config, draft_dir=draft_dir, pad_set_to_eos=pad_set,
        sample_seed=generation.get("sample_seed"),
        split_report=report, source={"model": str(folder), "task": "text-generation",
                                     "model_type": getattr(config, "model_type", None),
                                     "draft": str(draft_dir) if draft_dir else None})


def _module_generation_workload(spec: str, made: dict, calib: UserData, held: UserData, report: dict,
                                generation: dict) -> Workload:
    from accelkit.workloads.generation import DEFAULT_MAX_NEW_TOKENS, GenerationWorkload

    if generation.get("draft") is not None:
        raise ConfigError(f"--model {spec}: --draft takes a model folder beside a model folder; pass --model as "
                          "a Hugging Face causal-LM folder")
    tokenizer, module = made.get("tokenizer"), made["model"]
    if tokenizer is None or not callable(getattr(module, "generate", None)):
        raise ConfigError(f"--model {spec}: text-generation needs a model with generate() and its tokenizer; "
                          "return {'model': ..., 'tokenizer': ...} from the function")
    prompts = _generation_prompts(calib, held)
    pad_set = _generation_tokenizer(tokenizer, Path(spec))
    positions = made.get("max_length") or model_max_length(tokenizer, getattr(module, "config", None), None)
    return GenerationWorkload(spec, lambda: module, tokenizer, *prompts, positions=int(positions),
                              max_new_tokens=generation.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS,
                              pad_set_to_eos=pad_set, split_report=report, sample_seed=generation.get("sample_seed"),
                              source={"model": spec, "task": "text-generation"})


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


# by TaskSpec.inputs: the --data a task needs, and what to save when its preprocessor does not load
_DATA_NEEDED = {"text": "text as --data (.txt, .jsonl, .csv)", "images": "a folder of images as --data"}
_PREPROCESSOR_MISSING = {
    "text": "no usable tokenizer files ({error}); save the tokenizer into the folder with tokenizer.save_pretrained",
    "images": "no usable image processor (preprocessor_config.json); save it into the folder with "
              "processor.save_pretrained",
}


def _folder_workload(folder: Path, task: str | None, calib: UserData, held: UserData, report: dict,
                     output: str | None) -> Workload:
    sentence = read_sentence_config(folder) if folder.is_dir() else None
    hf_dir = folder / sentence.transformer_path if sentence else folder
    config = load_config(hf_dir)
    task = task or infer_task(getattr(config, "architectures", None) or [], sentence is not None)
    spec = get_task(task)
    source = {"model": str(folder), "task": task, "model_type": getattr(config, "model_type", None)}
    if calib.kind != spec.inputs:
        raise ConfigError(f"--task {task} needs {_DATA_NEEDED[spec.inputs]}, not {calib.kind} ({calib.source})")
    preprocessor = _load_preprocessor(spec, hf_dir)
    if spec.inputs == "images":
        return HFImageWorkload(folder.name, lambda: load_hf_model(hf_dir, task, config), preprocessor, task, calib,
                               held, split_report=report, source=source, hf_config=config)
    spec.prepare_tokenizer(preprocessor, folder)
    labels = (spec.labels(calib.labels, config, calib.source), spec.labels(held.labels, config, held.source))
    return HFTextWorkload(
        folder.name, lambda: load_hf_model(hf_dir, task, config), preprocessor, task,
        _texts(calib, labels[0]), _texts(held, labels[1]),
        max_length=model_max_length(preprocessor, config, sentence), sentence=sentence, output=output,
        split_report=report, source={**source, "sentence_transformers": sentence.to_dict() if sentence else None},
        config=config, hf_dir=hf_dir,
    )


def _load_preprocessor(spec: TaskSpec, folder: Path) -> Any:
    try:
        return spec.load_preprocessor(folder)
    except (ValueError, OSError, KeyError, TypeError) as exc:
        why = _PREPROCESSOR_MISSING[spec.inputs].format(error=type(exc).__name__)
        raise ModelFolderError(f"--model {folder}: {why}") from exc


def _module_workload(spec: str, module: nn.Module, tokenizer: Any, task: str | None, calib: UserData,
                     held: UserData, report: dict, output: str | None, made: dict) -> Workload:
    if calib.kind == "text":
        if tokenizer is None:
            raise ConfigError(f"--model {spec}: text --data needs a tokenizer; return {{'model': ..., "
                              "'tokenizer': AutoTokenizer...}} from the function, or pass tensors (.npy)")
        task = task or "feature-extraction"
        get_task(task).prepare_tokenizer(tokenizer, Path(spec))
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
    workload.prefer = get_task(task).output if task else "logits"
    return workload


class OutputPickingTensorWorkload(TensorWorkload):
    """TensorWorkload for any model output: tensors, tuples, dicts, Hugging Face ModelOutputs."""

    task: str = "tensor"
    output: str | None = None  # the output the user named (--output)
    prefer: str = "logits"  # the output read when the user named none: the task's
    split_report: dict = {}

    def forward(self, model: Callable, inputs: torch.Tensor) -> torch.Tensor:
        return pick_output(model(inputs), self.prefer, self.output)


class HFImageWorkload(Workload):
    """A Hugging Face image model of an image task (``accelkit.tasks``) on a folder of images, its
    inputs made by the folder's image processor; the task says how the outputs are scored (and
    how the class sub-folders the images sit in count as labels)."""

    def __init__(self, name: str, model_fn: Callable[[], nn.Module], processor: Any, task: str, calib: UserData,
                 held: UserData, *, split_report: dict | None = None, source: dict | None = None,
                 hf_config: Any = None) -> None:
        spec = get_task(task)
        if spec.inputs != "images":
            image_tasks = [n for n in list_tasks() if get_task(n).inputs == "images"]
            raise ConfigError(f"--task {task!r}: an image model takes one of {', '.join(image_tasks)}")
        self.name = name
        self._model_fn = model_fn
        self.processor = processor
        self._calib, self._held = calib, held
        self.split_report = dict(split_report or {})
        self.source = dict(source or {})
        self.task = task
        self.spec = spec
        self.hf_config = hf_config
        self.primary_metric = spec.primary_metric
        self.higher_is_better = spec.higher_is_better
        self.item_unit = spec.item_unit
        self.default_batch_size = spec.default_batch_size

    def ship_spec(self) -> dict | None:
        return {"processor": self.processor, "config": self.hf_config,
                "pipeline": {"workload": self.name, "task": self.task, "input_names": ["pixel_values"]}}

    def offers(self) -> frozenset[str]:
        return frozenset({"onnx-exportable"} | self.spec.offers)

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
        return self.spec.reduce(self.spec.pick_output(model(**inputs)), inputs)

    def quality(self, outputs: torch.Tensor, reference: torch.Tensor, data: UserData) -> dict[str, float]:
        return self.spec.quality(outputs, reference, self.spec.labels(data.labels, self.hf_config, data.source))
