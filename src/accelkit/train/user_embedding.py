"""Contrastive fine-tuning of a user's sentence-embedding folder (``accelkit train --task
sentence-embedding``): MultipleNegativesRankingLoss with in-batch negatives on (anchor, positive)
text pairs, the loss sentence-transformers users fine-tune with.

Each batch of B pairs goes through the model as one batch of 2B texts (anchors, then positives,
padded to the batch's longest); token states are pooled as the folder pools them (mean unless its
``1_Pooling`` says otherwise, ``tasks/pooling.py``); anchor i's positive is pair i and the other
B-1 positives are its negatives: cross-entropy over ``scale × cos(anchor_i, positive_j)`` with
scale 20, sentence-transformers' default. Buys: no labels needed, only pairs. Costs: quality
grows with B (more negatives), and under DDP each process sees its own B pairs only.

The trained model is saved as a sentence-transformers folder (``modules.json``, pooling, the
Transformer's weights as safetensors, tokenizer), which ``accelkit optimize --model`` reads as a
sentence-embedding model.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

__all__ = [
    "MNRL_SCALE",
    "EmbeddingForward",
    "PairCollator",
    "TokenizedPairs",
    "evaluate_pairs",
    "multiple_negatives_ranking_loss",
    "save_sentence_folder",
]

MNRL_SCALE = 20.0  # sentence-transformers' MultipleNegativesRankingLoss default (cosine × 20)


class EmbeddingForward(nn.Module):
    """A Hugging Face encoder called on ``{input_ids, attention_mask}``, its token states pooled to
    one embedding per row (B, D) by ``pooling`` (a mode of ``tasks.pooling.POOLING_MODES``)."""

    def __init__(self, model: nn.Module, pooling: str = "mean") -> None:
        super().__init__()
        self.model = model
        self.pooling = pooling
        # the model's own pooler (BERT's dense+tanh on [CLS]) is not what the embedding reads: frozen,
        # it stays as saved and DDP does not wait for gradients it never gets
        pooler = getattr(model, "pooler", None)
        if isinstance(pooler, nn.Module):
            pooler.requires_grad_(False)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        from accelkit.tasks.pooling import pool_tokens

        hidden = self.model(**inputs).last_hidden_state  # (B, T, D)
        return pool_tokens(hidden, inputs["attention_mask"], self.pooling)


class TokenizedPairs(Dataset):
    """Token ids of (anchor, positive) pairs, unpadded; ``lengths`` (the longer of the two) lets
    ``group_by_length`` batch similar pairs; ``texts`` are the pairs as read (what
    SentenceTransformerTrainer, the peer rows, tokenizes itself)."""

    def __init__(self, anchors: list[list[int]], positives: list[list[int]],
                 texts: list[tuple[str, str]] | None = None) -> None:
        self.anchors, self.positives, self.texts = anchors, positives, texts
        self.lengths = [max(len(a), len(p)) for a, p in zip(anchors, positives, strict=True)]

    def __len__(self) -> int:
        return len(self.anchors)

    def __getitem__(self, index: int) -> tuple[list[int], list[int]]:
        return self.anchors[index], self.positives[index]


@dataclass
class PairCollator:
    """B pairs → ``(inputs, targets)``: inputs of 2B rows (the anchors, then their positives)
    padded to the batch's longest text; targets ``arange(B)``, each anchor's positive's row among
    the positives."""

    pad_id: int

    def __call__(self, items: list[tuple[list[int], list[int]]]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        texts = [a for a, _ in items] + [p for _, p in items]
        width = max(len(ids) for ids in texts)
        input_ids = torch.full((len(texts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(texts), width), dtype=torch.long)
        for row, ids in enumerate(texts):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            mask[row, : len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}, torch.arange(len(items))


def multiple_negatives_ranking_loss(embeddings: torch.Tensor, targets: torch.Tensor,
                                    scale: float = MNRL_SCALE) -> torch.Tensor:
    """sentence-transformers' MultipleNegativesRankingLoss: embeddings (2B, D) are B anchors then
    B positives; cross-entropy of each anchor's scaled cosines to all B positives against its own."""
    anchors, positives = embeddings.float().chunk(2)
    scores = nn.functional.normalize(anchors, dim=-1) @ nn.functional.normalize(positives, dim=-1).T  # (B, B)
    return nn.functional.cross_entropy(scores * scale, targets)


@torch.no_grad()
def evaluate_pairs(model: nn.Module, data: TokenizedPairs, collate: PairCollator, batch: int = 32) -> dict[str, float]:
    """Held-out pairs, all at once: ``val_loss`` is the ranking loss of each anchor against every
    held-out positive (not only its batch's), ``val_accuracy`` how often its own positive ranks first."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    anchors, positives = [], []
    for start in range(0, len(data), batch):
        inputs, _ = collate([data[i] for i in range(start, min(start + batch, len(data)))])
        emb = model({k: v.to(device) for k, v in inputs.items()}).float().cpu()
        a, p = emb.chunk(2)
        anchors.append(a)
        positives.append(p)
    model.train(was_training)
    a = nn.functional.normalize(torch.cat(anchors), dim=-1)
    p = nn.functional.normalize(torch.cat(positives), dim=-1)
    scores = a @ p.T  # (N, N)
    target = torch.arange(len(a))
    return {"val_loss": float(nn.functional.cross_entropy(scores * MNRL_SCALE, target)),
            "val_accuracy": float((scores.argmax(1) == target).float().mean())}


def save_sentence_folder(folder: Path, source: Path, transformer_path: str, hf_model: nn.Module, tokenizer: Any,
                         pooling: str, max_seq_length: int) -> None:
    """Write the trained encoder into ``folder`` as sentence-transformers lays one out.

    ``source`` is a sentence-transformers folder (``transformer_path`` its Transformer's sub-folder):
    its modules (pooling, Normalize, ...) are copied and the Transformer replaced by the trained
    one. A plain Hugging Face encoder folder gets Transformer + ``pooling`` (what
    ``SentenceTransformer(folder)`` builds from one), and a ``sentence_bert_config.json``.
    """
    if (source / "modules.json").is_file():
        # the modules the folder lists, but not the Transformer (trained) nor anything else beside
        # (an onnx/ or openvino/ export of the old weights would be stale)
        for name in ("modules.json", "config_sentence_transformers.json", "sentence_bert_config.json"):
            if (source / name).is_file():
                shutil.copy2(source / name, folder / name)
        for module in json.loads((source / "modules.json").read_text(encoding="utf-8")):
            path = str(module.get("path", "")) if isinstance(module, dict) else ""
            if path and path != transformer_path and (source / path).is_dir():
                shutil.copytree(source / path, folder / path, dirs_exist_ok=True)
        if transformer_path and (source / transformer_path / "sentence_bert_config.json").is_file():
            (folder / transformer_path).mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / transformer_path / "sentence_bert_config.json", folder / transformer_path)
    else:
        width = int(hf_model.config.hidden_size)
        flags = {f"pooling_mode_{m}_tokens": m == pooling for m in ("mean", "max", "mean_sqrt_len")}
        (folder / "1_Pooling").mkdir(parents=True, exist_ok=True)
        (folder / "1_Pooling" / "config.json").write_text(json.dumps(
            {"word_embedding_dimension": width, "pooling_mode_cls_token": pooling == "cls", **flags}, indent=2))
        (folder / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}], indent=2))
        (folder / "sentence_bert_config.json").write_text(json.dumps(
            {"max_seq_length": max_seq_length, "do_lower_case": False}, indent=2))
    target = folder / transformer_path if transformer_path else folder
    target.mkdir(parents=True, exist_ok=True)
    hf_model.save_pretrained(str(target), safe_serialization=True)
    tokenizer.save_pretrained(str(target))
