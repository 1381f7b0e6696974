"""A user's own model and data as a workload: a Hugging Face or sentence-transformers folder
(read with ``local_files_only``, never a download, no remote code) run on the user's ``--data``
split into calibration and held-out parts, scored against the fp32 model's own outputs."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from accelkit.errors import ConfigError, DataFileError, ModelFolderError
from accelkit.techniques.pooling import mean_pool
from accelkit.workloads.base import RunSettings
from accelkit.workloads.text import TokenizedTextWorkload

__all__ = [
    "MODEL_TASKS",
    "HFTextWorkload",
    "SentenceConfig",
    "infer_task",
    "load_hf_model",
    "pick_output",
    "read_sentence_config",
]

MODEL_TASKS = ("feature-extraction", "sentence-embedding", "text-classification", "causal-lm",
               "image-classification")
_TEXT_TASKS = MODEL_TASKS[:4]
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
_POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len")


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
        modes = [m for m in _POOLING_MODES if pool_cfg.get(f"pooling_mode_{m}_tokens" if m != "cls"
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


def infer_task(config: Any, sentence: SentenceConfig | None) -> str:
    """The task a folder's config implies, or a ModelFolderError asking for ``--task``."""
    if sentence is not None:
        return "sentence-embedding"
    archs = [str(a) for a in (getattr(config, "architectures", None) or [])]
    for arch in archs:
        if arch.endswith("ForSequenceClassification"):
            return "text-classification"
        if arch.endswith(("ForCausalLM", "LMHeadModel")):
            return "causal-lm"
        if arch.endswith("ForImageClassification"):
            return "image-classification"
    if archs and all(a.endswith("Model") for a in archs):
        return "feature-extraction"
    raise ModelFolderError(f"cannot tell the task from the config (architectures: {archs or 'none'}); pass "
                           f"--task, one of {', '.join(MODEL_TASKS)}")


def auto_model_class(task: str) -> Any:
    """The transformers Auto class that loads a model for ``task``."""
    import transformers as tf

    return {"feature-extraction": tf.AutoModel, "sentence-embedding": tf.AutoModel,
            "text-classification": tf.AutoModelForSequenceClassification, "causal-lm": tf.AutoModelForCausalLM,
            "image-classification": tf.AutoModelForImageClassification}[task]


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
    cls = auto_model_class(task)
    kwargs = {"local_files_only": True, "trust_remote_code": False, "dtype": torch.float32}
    try:
        try:
            model = cls.from_pretrained(str(folder), attn_implementation="sdpa", **kwargs)
        except (ValueError, ImportError):  # an architecture without SDPA: its own attention
            model = cls.from_pretrained(str(folder), **kwargs)
    except (ValueError, KeyError, OSError) as exc:
        raise ModelFolderError(f"--model {folder}: cannot load it for --task {task} ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0][:160]}); check the task fits the model") from exc
    if task == "causal-lm" and hasattr(model.config, "use_cache"):
        model.config.use_cache = False  # scoring whole sequences: no key/value cache to build or export
    return model.float().eval()


def pick_output(out: Any, task: str, name: str | None = None) -> torch.Tensor:
    """The tensor a task reads from a model's output: a tensor, a tuple (its first element), a
    dict or Hugging Face ``ModelOutput`` (``name``, else logits / last_hidden_state by task)."""
    if isinstance(out, torch.Tensor):
        return out
    if name is not None:
        value = out.get(name) if hasattr(out, "get") else getattr(out, name, None)
        if not isinstance(value, torch.Tensor):
            keys = list(out.keys()) if hasattr(out, "keys") else type(out).__name__
            raise ConfigError(f"--output {name!r}: the model's output has no such tensor (it has {keys})")
        return value
    wanted = ("last_hidden_state",) if task in ("feature-extraction", "sentence-embedding") else ("logits",)
    if hasattr(out, "keys"):
        for key in (*wanted, "logits", "last_hidden_state", "pooler_output"):
            value = out.get(key)
            if isinstance(value, torch.Tensor):
                return value
        for value in out.values():
            if isinstance(value, torch.Tensor):
                return value
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise ConfigError(f"the model returned a {type(out).__name__} with no tensor accelkit can score; name one "
                      "with --output")


def pool_tokens(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Token states (B, T, D) → one vector per row, as sentence-transformers' Pooling does."""
    if mode == "mean":
        return mean_pool(hidden, mask)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        return hidden.masked_fill(~mask.bool().unsqueeze(-1), torch.finfo(hidden.dtype).min).amax(1)
    summed = (hidden * mask.unsqueeze(-1).to(hidden.dtype)).sum(1)  # mean_sqrt_len
    return summed / mask.sum(1, keepdim=True).to(hidden.dtype).clamp(min=1).sqrt()


class LabelledTexts(list):
    """A list of strings that may carry labels (class ids aligned with the items)."""

    labels: list[int] | None = None

    @classmethod
    def of(cls, items: list[str], labels: list[int] | None) -> LabelledTexts:
        made = cls(items)
        made.labels = labels
        return made


def _label_ids(raw: list | None, config: Any, source: Path) -> list[int] | None:
    """User labels as the model's class ids: names from ``id2label`` or integers in range."""
    if raw is None:
        return None
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    by_name = {v: k for k, v in id2label.items()}
    n = int(getattr(config, "num_labels", len(id2label)) or len(id2label))
    out = []
    for value in raw:
        text = str(value).strip()
        if text in by_name:
            out.append(by_name[text])
        elif text.lstrip("-").isdigit() and 0 <= int(text) < n:
            out.append(int(text))
        else:
            names = ", ".join(id2label.get(i, str(i)) for i in range(min(n, 8)))
            raise DataFileError(f"{source}: label {text!r} is not one of the model's {n} classes ({names}); "
                                "use the class names of config.json's id2label or ids 0..num_labels-1")
    return out


class HFTextWorkload(TokenizedTextWorkload):
    """A Hugging Face text model (feature-extraction, sentence-embedding, text-classification,
    causal-lm) on the user's text, split into calibration and held-out parts.

    The default run is the user's: a sentence-transformers model as ``encode`` runs it
    (length-sorted, padded per batch, its ``max_seq_length``); a plain Hugging Face model as
    its tokenizer pads by default (per batch, in data order), truncated at its maximum length.
    """

    default_batch_size = 32

    def __init__(self, name: str, model_fn: Callable[[], nn.Module], tokenizer: Any, task: str,
                 calib: LabelledTexts, heldout: LabelledTexts, *, max_length: int,
                 sentence: SentenceConfig | None = None, output: str | None = None,
                 split_report: dict | None = None, source: dict | None = None, config: Any = None) -> None:
        if task not in _TEXT_TASKS:
            raise ConfigError(f"--task {task!r}: a text model takes one of {', '.join(_TEXT_TASKS)}")
        self.name = name
        self._model_fn = model_fn
        self.tokenizer = tokenizer
        self.task = task
        self._calib, self._heldout = calib, heldout
        self.model_max_length = max_length
        self.sentence = sentence
        self.sorts_by_length = sentence is not None  # SentenceTransformer.encode sorts; a tokenizer call does not
        self.output = output
        self.split_report = dict(split_report or {})
        self.source = dict(source or {})
        self.hf_config = config
        self.primary_metric = {"text-classification": "agreement", "causal-lm": "next_token_agreement"}.get(
            task, "cosine_mean")
        self.item_unit = "sequences" if task == "causal-lm" else "sentences"

    def offers(self) -> frozenset[str]:
        found = self.text_offers() | {"onnx-exportable"}
        if self.task in ("feature-extraction", "sentence-embedding"):
            found.add("sentence-embedding")
        return frozenset(found)

    def build_model(self) -> nn.Module:
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

    def screen_data(self, limit: int) -> LabelledTexts:
        return self.calib_data(limit)

    def data_report(self, data: list[str], settings: RunSettings) -> dict[str, Any]:
        return {**super().data_report(data, settings), "split": self.split_report}

    def forward(self, model: Callable, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        out = pick_output(model(**inputs), self.task, self.output)
        mask = inputs["attention_mask"]
        if self.task in ("feature-extraction", "sentence-embedding"):
            if out.dim() == 2:  # the model pools itself (a custom output)
                return out
            return pool_tokens(out, mask, self.sentence.pooling if self.sentence else "mean")
        if self.task == "causal-lm":
            return next_token_summary(out, inputs["input_ids"], mask, self.model_max_length)
        return out

    def quality(self, outputs: torch.Tensor, reference: torch.Tensor, data: Any) -> dict[str, float]:
        if self.task in ("feature-extraction", "sentence-embedding"):
            from accelkit.workloads.minilm import embedding_quality

            return embedding_quality(outputs, reference)
        if self.task == "causal-lm":
            return causal_lm_quality(outputs, reference)
        pred, ref = outputs.argmax(-1).cpu(), reference.argmax(-1).cpu()
        found = {"agreement": float((pred == ref).float().mean())}
        labels = getattr(data, "labels", None)
        if labels is not None and len(labels) == len(pred):
            found["accuracy"] = float((pred == torch.tensor(labels)).float().mean())
        return found


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


def next_token_summary(logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor, width: int) -> torch.Tensor:
    """Per sequence, fixed width: [summed next-token NLL, predicted tokens, argmax ids (−1 after the
    end)]. Sequences of different padded lengths then reassemble into one tensor."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    target = input_ids[:, 1:]
    valid = mask[:, 1:].bool() & mask[:, :-1].bool()
    nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    pred = logp.argmax(-1).masked_fill(~valid, -1).float()
    out = torch.full((len(logits), 2 + width), -1.0)
    out[:, 0] = (nll * valid).sum(1)
    out[:, 1] = valid.sum(1).float()
    out[:, 2 : 2 + pred.shape[1]] = pred[:, :width]
    return out


def causal_lm_quality(outputs: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """Next-token agreement with the fp32 model's predictions, and the perplexity change."""
    valid = reference[:, 2:] >= 0
    agree = ((outputs[:, 2:] == reference[:, 2:]) & valid).sum() / valid.sum().clamp(min=1)
    tokens = outputs[:, 1].sum().clamp(min=1)
    ppl = float(torch.exp(outputs[:, 0].sum() / tokens))
    ref_ppl = float(torch.exp(reference[:, 0].sum() / reference[:, 1].sum().clamp(min=1)))
    return {"next_token_agreement": float(agree), "perplexity": ppl, "perplexity_change": ppl / ref_ppl - 1}


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
