"""A shipped model folder loaded once per worker, with that worker's share of the threads, turning
texts into output columns: an embedding (fixed-size list of float32) for embedding models, a
label and its score (softmax of the logits, names from config.json's id2label) for classifiers,
the written text (``generate``, greedy) for text-generation models."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from accelkit.errors import ConfigError, ModelFolderError

__all__ = ["SUPPORTED_TASKS", "ShippedRunner", "check_model_folder"]

# the task methods accelkit run calls: ``encode`` for embeddings, label and score for classifiers,
# ``generate`` for text generation
_ENCODE_TASKS = ("sentence-embedding", "feature-extraction")
_GENERATE_TASKS = ("text-generation",)
SUPPORTED_TASKS = (*_ENCODE_TASKS, "text-classification", *_GENERATE_TASKS)


def check_model_folder(path: str | Path) -> str:
    """The task of a shipped accelkit folder, read from its plan.json without loading the model
    (each worker loads and verifies it); ModelFolderError/ConfigError with one line otherwise."""
    from accelkit.saving import SCHEMA

    root = Path(path)
    fix = "pass a folder written by `accelkit export --model ...` or accelkit.save(..., workload=...)"
    if not root.is_dir():
        raise ModelFolderError(f"model folder {root} does not exist; {fix}")
    try:
        meta = json.loads((root / "plan.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        raise ModelFolderError(f"{root} is not an accelkit save (no readable plan.json); {fix}") from None
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        raise ModelFolderError(f"{root}/plan.json is not an accelkit save of schema {SCHEMA!r}; {fix}")
    if meta.get("format") not in ("hf-onnx", "hf-torch", "hf-openvino"):
        raise ModelFolderError(f"{root} is rebuilt by plan on load (format {meta.get('format')!r}), not "
                               f"self-contained; {fix}")
    task = (meta.get("pipeline") or {}).get("task")
    if task not in SUPPORTED_TASKS:
        raise ConfigError(f"{root} is a {task} model; accelkit run supports {', '.join(SUPPORTED_TASKS)} "
                          "(embeddings, label and score, or text)")
    return str(task)


def check_run_options(task: str, max_new_tokens: int | None, seed: int | None = None) -> None:
    """ConfigError with one line when an option does not fit the folder's task."""
    for flag, value in (("--max-new-tokens", max_new_tokens), ("--seed", seed)):
        if value is not None and task not in _GENERATE_TASKS:
            raise ConfigError(f"{flag} is for text-generation models; this one is {task}: drop it")


class ShippedRunner:
    """The folder's model, loaded with ``threads`` compute threads (torch and ONNX Runtime).
    ``max_new_tokens``: for text generation (default: the number the folder was measured with)."""

    def __init__(self, folder: str | Path, threads: int, batch_size: int,
                 max_new_tokens: int | None = None) -> None:
        import torch

        from accelkit.saving import load

        self.task = check_model_folder(folder)
        check_run_options(self.task, max_new_tokens)
        self.generates = self.task in _GENERATE_TASKS
        self.max_new_tokens = max_new_tokens
        torch.set_num_threads(threads)
        # ONNX Runtime and OpenVINO read $ACCELKIT_THREADS when the session is made, at load
        before = os.environ.get("ACCELKIT_THREADS")
        os.environ["ACCELKIT_THREADS"] = str(threads)
        try:
            self.model = load(folder)
        finally:
            if before is None:
                os.environ.pop("ACCELKIT_THREADS", None)
            else:
                os.environ["ACCELKIT_THREADS"] = before
        self.batch_size = batch_size
        self.width = 0
        self.id2label: dict[int, str] = {}
        if self.task in _ENCODE_TASKS:
            self.width = int(self.model.encode(["width"], batch_size=1).shape[1])
        elif not self.generates:
            config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
            self.id2label = {int(k): str(v) for k, v in (config.get("id2label") or {}).items()}

    def schema(self, ids_are_given: bool) -> Any:
        """The part's columns: the id (the given string, or the row number), then the outputs."""
        import pyarrow as pa

        fields = [pa.field("id", pa.string() if ids_are_given else pa.int64())]
        if self.width:
            fields.append(pa.field("embedding", pa.list_(pa.float32(), self.width)))
        elif self.generates:
            fields.append(pa.field("text", pa.string()))
        else:
            fields += [pa.field("label", pa.string()), pa.field("score", pa.float32())]
        return pa.schema(fields)

    def table(self, ids: list[Any], texts: list[str], ids_are_given: bool, seed: int | None = None) -> Any:
        """One row per text, in order: its id and the model's output. ``seed``: a text-generation
        model samples, its first batch seeded with it (``ShippedModel.generate``)."""
        import numpy as np
        import pyarrow as pa

        schema = self.schema(ids_are_given)
        columns: list[Any] = [pa.array(ids, type=schema.field("id").type)]
        if self.width:
            emb = (self.model.encode(texts, batch_size=self.batch_size) if texts
                   else np.zeros((0, self.width), np.float32))
            flat = pa.array(np.ascontiguousarray(emb, dtype=np.float32).reshape(-1))
            columns.append(pa.FixedSizeListArray.from_arrays(flat, self.width))
        elif self.generates:
            written = (self.model.generate(texts, max_new_tokens=self.max_new_tokens, batch_size=self.batch_size,
                                           seed=seed) if texts else [])
            columns.append(pa.array(written, pa.string()))
        else:
            labels, scores = self._classify(texts)
            columns += [pa.array(labels, pa.string()), pa.array(scores, pa.float32())]
        return pa.Table.from_arrays(columns, schema=schema)

    def _classify(self, texts: list[str]) -> tuple[list[str], list[float]]:
        import torch

        from accelkit.tasks import pick_output

        model = self.model
        labels, scores = [""] * len(texts), [0.0] * len(texts)
        # longest first, as encode batches, each padded as the plan was measured
        for _, idx, inputs in model.padded_batches(texts, int(model.pipeline["max_length"]), self.batch_size,
                                                   sort_by_length=True):
            probs = torch.softmax(pick_output(model(**inputs), "logits").float(), dim=-1)
            best, top = probs.max(dim=-1)
            for i, p, k in zip(idx, best.tolist(), top.tolist(), strict=True):
                labels[i], scores[i] = self.id2label.get(k, str(k)), p
        return labels, scores
