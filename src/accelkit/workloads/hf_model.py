"""Hugging Face text models as workloads: a Hugging Face or sentence-transformers folder (read
with ``local_files_only``, never a download, no remote code) run as one of the text tasks of
``accelkit.tasks`` on texts split into calibration and held-out parts, scored against the fp32
model's own outputs. The user's ``--model`` and the embedded minilm are both this workload."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from accelkit.errors import ConfigError, ModelFolderError
from accelkit.tasks import get_task, list_tasks
from accelkit.tasks.pooling import POOLING_MODES
from accelkit.workloads.base import RunSettings
from accelkit.workloads.text import TokenizedTextWorkload

__all__ = [
    "HFTextWorkload",
    "LabelledTexts",
    "SentenceConfig",
    "load_config",
    "load_hf_model",
    "model_max_length",
    "read_sentence_config",
    "text_pipeline",
]

_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


@dataclass(frozen=True)
class SentenceConfig:
    """What a sentence-transformers folder says about turning token states into an embedding."""

    pooling: str = "mean"
    normalize: bool = False
    max_seq_length: int | None = None
    transformer_path: str = ""  # the sub-folder holding the Hugging Face model ("" = the folder itself)

    def to_dict(self) -> dict:
        return {"pooling": self.pooling, "normalize": self.normalize, "max_seq_length": self.max_seq_length,
                "transformer_path": self.transformer_path}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFolderError(f"{path} is not readable JSON ({type(exc).__name__}); repair or re-save the "
                               "model folder") from exc


def read_sentence_config(folder: Path) -> SentenceConfig | None:
    """The pooling, normalisation and ``max_seq_length`` of a sentence-transformers folder
    (``modules.json``), or None for a plain Hugging Face folder. Reads JSON only."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return None
    modules = _read_json(modules_file)
    if not isinstance(modules, list):
        raise ModelFolderError(f"{modules_file}: expected a list of modules; re-save with sentence-transformers")
    kinds = {str(m.get("type", "")).rsplit(".", 1)[-1]: str(m.get("path", "")) for m in modules if isinstance(m, dict)}
    if "Transformer" not in kinds:
        raise ModelFolderError(f"{modules_file} has no Transformer module; accelkit runs sentence-transformers "
                               "models built on a Hugging Face transformer")
    pooling = "mean"
    if "Pooling" in kinds:
        pool_cfg = _read_json(folder / kinds["Pooling"] / "config.json")
        modes = [m for m in POOLING_MODES if pool_cfg.get(f"pooling_mode_{m}_tokens" if m != "cls"
                                                             else "pooling_mode_cls_token")]
        if len(modes) != 1:
            raise ModelFolderError(f"{folder / kinds['Pooling']}/config.json: pooling {modes or 'none'}; accelkit "
                                   "supports exactly one of mean, cls, max, mean_sqrt_len")
        pooling = modes[0]
    tpath = kinds["Transformer"]
    max_len = None
    sbert = folder / tpath / "sentence_bert_config.json"
    if sbert.is_file():
        value = _read_json(sbert).get("max_seq_length")
        max_len = int(value) if isinstance(value, int) and value > 0 else None
    return SentenceConfig(pooling, "Normalize" in kinds, max_len, tpath)


def load_config(folder: Path) -> Any:
    """The folder's transformers config; one-line errors for a missing folder, config or weights,
    and for an architecture this transformers does not know (remote code is never run)."""
    if not folder.is_dir():
        raise ModelFolderError(f"--model {folder}: no such folder; pass a Hugging Face or sentence-transformers "
                               "model folder, or package.module:function")
    if not (folder / "config.json").is_file():
        raise ModelFolderError(f"--model {folder}: no config.json; pass the folder save_pretrained wrote")
    if not any((folder / w).is_file() for w in _WEIGHTS):
        raise ModelFolderError(f"--model {folder}: no weights ({', '.join(_WEIGHTS)}); pass the folder "
                               "save_pretrained wrote, with its weights")
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except (ValueError, KeyError, OSError) as exc:
        model_type = (_read_json(folder / "config.json") or {}).get("model_type")
        raise ModelFolderError(f"--model {folder}: transformers {_tf_version()} does not know the architecture "
                               f"{model_type!r}; upgrade transformers (remote code is never run)") from exc


def _tf_version() -> str:
    import transformers

    return transformers.__version__


def load_hf_model(folder: Path, task: str, config: Any = None) -> nn.Module:
    """The fp32 model of ``folder`` for ``task``, in eval mode; ModelFolderError when it does not fit."""
    config = config if config is not None else load_config(folder)
    spec = get_task(task)
    cls = spec.model_class()
    kwargs = {"local_files_only": True, "trust_remote_code": False, "dtype": torch.float32}
    try:
        try:
            model = cls.from_pretrained(str(folder), attn_implementation="sdpa", **kwargs)
        except (ValueError, ImportError):  # an architecture without SDPA: its own attention
            model = cls.from_pretrained(str(folder), **kwargs)
    except (ValueError, KeyError, OSError) as exc:
        raise ModelFolderError(f"--model {folder}: cannot load it for --task {task} ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0][:160]}); check the task fits the model") from exc
    spec.prepare_config(model.config)
    return model.float().eval()


class LabelledTexts(list):
    """A list of strings that may carry labels, one per item in the form its task scores
    (``TaskSpec.labels``: class ids for the classifiers)."""

    labels: list[int] | None = None

    @classmethod
    def of(cls, items: list[str], labels: list[int] | None) -> LabelledTexts:
        made = cls(items)
        made.labels = labels
        return made


class HFTextWorkload(TokenizedTextWorkload):
    """A Hugging Face text model of any text task (``accelkit.tasks``) on texts split into
    calibration and held-out parts; the task says which output it reads, how it reduces it per
    text and how it scores it.

    The default run is the user's: a sentence-transformers model as ``encode`` runs it
    (length-sorted, padded per batch, its ``max_seq_length``); a plain Hugging Face model as
    its tokenizer pads by default (per batch, in data order), truncated at its maximum length.
    Given ``hf_dir`` (the folder holding the Hugging Face model), the model, tokenizer and config
    it is not handed are read from there on first use.
    """

    def __init__(self, name: str, model_fn: Callable[[], nn.Module] | None, tokenizer: Any, task: str,
                 calib: LabelledTexts, heldout: LabelledTexts, *, max_length: int,
                 sentence: SentenceConfig | None = None, output: str | None = None,
                 split_report: dict | None = None, source: dict | None = None, config: Any = None,
                 hf_dir: Path | None = None) -> None:
        spec = get_task(task)
        if spec.inputs != "text":
            text_tasks = [n for n in list_tasks() if get_task(n).inputs == "text"]
            raise ConfigError(f"--task {task!r}: a text model takes one of {', '.join(text_tasks)}")
        if spec.method == "generate":
            raise ConfigError(f"--task {task!r} writes text: its workload is accelkit.workloads.generation."
                              "GenerationWorkload (workload_from_model builds it)")
        if hf_dir is None and (model_fn is None or tokenizer is None):
            raise ConfigError(f"workload {name!r}: pass the model and tokenizer, or the folder they load from")
        self.name = name
        self.task = task
        self.spec = spec
        self._model_fn = model_fn
        self._tokenizer = tokenizer
        self._hf_config = config
        self._hf_dir = hf_dir
        self._calib, self._heldout = calib, heldout
        self.model_max_length = max_length
        self.sentence = sentence
        self.sorts_by_length = sentence is not None  # SentenceTransformer.encode sorts; a tokenizer call does not
        self.output = output
        self.split_report = dict(split_report or {})
        self.source = dict(source or {})
        self.primary_metric = spec.primary_metric
        self.higher_is_better = spec.higher_is_better
        self.item_unit = spec.item_unit
        self.default_batch_size = spec.default_batch_size

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            self._tokenizer = self.spec.load_preprocessor(self._hf_dir)
            self.spec.prepare_tokenizer(self._tokenizer, self._hf_dir)
        return self._tokenizer

    @property
    def hf_config(self) -> Any:
        """The model's transformers config, or None for a model not read from a folder."""
        if self._hf_config is None and self._hf_dir is not None:
            self._hf_config = load_config(self._hf_dir)
        return self._hf_config

    def offers(self) -> frozenset[str]:
        return frozenset(self.text_offers() | {"onnx-exportable"} | self.spec.offers)

    def build_model(self) -> nn.Module:
        if self._model_fn is None:
            return load_hf_model(self._hf_dir, self.task, self.hf_config)
        return self._model_fn().eval()

    def sentence_folder(self) -> Path | None:
        return Path(self.source["model"]) if self.sentence is not None and self.source.get("model") else None

    def ship_spec(self) -> dict | None:
        """What a shipped folder needs to run this model without the workload (export.artifact)."""
        if self.hf_config is None:
            return None
        return {"tokenizer": self.tokenizer, "config": self.hf_config,
                "pipeline": text_pipeline(self.name, self.task, self.sentence, self.model_max_length,
                                          self.input_names, self.output)}

    def eval_data(self, limit: int | None = None) -> LabelledTexts:
        return _head(self._heldout, limit)

    def calib_data(self, limit: int | None = None) -> LabelledTexts:
        return _head(self._calib, limit)

    def data_report(self, data: list[str], settings: RunSettings) -> dict[str, Any]:
        found = super().data_report(data, settings)
        return {**found, "split": self.split_report} if self.split_report else found

    def forward(self, model: Callable, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.spec.pick_output(model(**inputs), self.output)
        return self.spec.reduce(out, inputs, pooling=self.sentence.pooling if self.sentence else "mean",
                                width=self.model_max_length)

    def quality(self, outputs: torch.Tensor, reference: torch.Tensor, data: Any) -> dict[str, float]:
        return self.spec.quality(outputs, reference, getattr(data, "labels", None))


def text_pipeline(name: str, task: str, sentence: SentenceConfig | None, max_length: int,
                  input_names: tuple[str, ...], output: str | None) -> dict:
    """The pre/post-processing a shipped text model carries (JSON-able)."""
    return {"workload": name, "task": task, "max_length": int(max_length), "input_names": list(input_names),
            "output": output, "pooling": sentence.pooling if sentence else "mean",
            "normalize": bool(sentence.normalize) if sentence else False,
            "sentence_transformers": sentence.to_dict() if sentence else None}


def _head(items: LabelledTexts, limit: int | None) -> LabelledTexts:
    n = len(items) if limit is None else min(limit, len(items))
    return LabelledTexts.of(list(items[:n]), None if items.labels is None else list(items.labels[:n]))


def model_max_length(tokenizer: Any, config: Any, sentence: SentenceConfig | None) -> int:
    """The longest input the model takes: sentence-transformers' ``max_seq_length``, else the
    tokenizer's limit, else the config's position count (512 when nothing says)."""
    limits = []
    if sentence is not None and sentence.max_seq_length:
        limits.append(sentence.max_seq_length)
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:
        limits.append(tok_max)
    for key in ("max_position_embeddings", "n_positions"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            limits.append(value)
            break
    return min(limits) if limits else 512
