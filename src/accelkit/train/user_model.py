"""Fine-tuning a user's Hugging Face folder (``accelkit train --model --data``): the folder's model on
its tokenized texts, padded per batch, with the task's loss, held-out scores and a saved folder.

The data is read and split as ``optimize --model`` does (``workload_from_model``): the calibration
part is trained on, the held-out part scored after training and never trained on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from accelkit.errors import ConfigError, DataFileError
from accelkit.tasks import infer_task
from accelkit.train.tasks import TrainingTask

__all__ = [
    "TRAINABLE_TASKS",
    "HFForward",
    "PaddingCollator",
    "TokenizedTexts",
    "UserTrainingTask",
    "causal_lm_loss",
    "classification_loss",
    "user_training_task",
]

TRAINABLE_TASKS = ("text-classification", "causal-lm")
# tasks a folder may have that training does not offer yet, and what to use meanwhile
_NOT_YET = {
    "sentence-embedding": "sentence-transformers' own fit (MultipleNegativesRankingLoss), then accelkit optimize",
    "image-classification": "the transformers Trainer, then accelkit optimize",
    "feature-extraction": "a head for the task (e.g. AutoModelForSequenceClassification.from_pretrained(folder, "
                          "num_labels=N).save_pretrained(new_folder)) and train that folder",
    "token-classification": "the transformers Trainer, then accelkit optimize",
}
_IGNORE = -100  # the target of a padded position: cross_entropy's ignore_index, as transformers uses


class HFForward(nn.Module):
    """A Hugging Face model called on a dict of input tensors, returning its logits: the training
    loop's ``loss_fn(model(inputs), targets)`` contract."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(**inputs).logits


class TokenizedTexts(Dataset):
    """Token ids per text (unpadded) and, for classification, one class id per text."""

    def __init__(self, ids: list[list[int]], classes: list[int] | None) -> None:
        self.ids = ids
        self.classes = classes
        self.lengths = [len(i) for i in ids]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[list[int], int | None]:
        return self.ids[index], None if self.classes is None else self.classes[index]


@dataclass
class PaddingCollator:
    """Pads a batch to its own longest text (dynamic padding): ``(inputs, targets)`` with inputs
    ``{input_ids, attention_mask}``; targets are the class ids, or (causal LM) the token ids with
    padded positions set to -100."""

    pad_id: int
    causal: bool

    def __call__(self, items: list[tuple[list[int], int | None]]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        width = max(len(ids) for ids, _ in items)
        input_ids = torch.full((len(items), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, (ids, _) in enumerate(items):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            mask[row, : len(ids)] = 1
        inputs = {"input_ids": input_ids, "attention_mask": mask}
        if self.causal:
            return inputs, input_ids.masked_fill(mask == 0, _IGNORE)
        return inputs, torch.tensor([c for _, c in items], dtype=torch.long)


def classification_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits.float(), targets)


def causal_lm_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy: position t predicts token t+1; padded targets are ignored."""
    vocab = logits.shape[-1]
    return nn.functional.cross_entropy(logits[:, :-1].float().reshape(-1, vocab), targets[:, 1:].reshape(-1),
                                       ignore_index=_IGNORE, reduction=reduction)


@dataclass
class UserTrainingTask(TrainingTask):
    """A TrainingTask for a user's folder, with what training it and saving it needs beside."""

    task: str = ""
    tokenizer: Any = None
    collate_fn: Callable[[list], Any] | None = None
    heldout: TokenizedTexts | None = None
    split_report: dict | None = None

    @property
    def hf_model(self) -> nn.Module:
        return self.model.model

    def save(self, folder: Path) -> Path:
        """The trained model as a Hugging Face folder (safetensors weights, config, tokenizer)."""
        folder.mkdir(parents=True, exist_ok=True)
        self.hf_model.save_pretrained(str(folder), safe_serialization=True)
        self.tokenizer.save_pretrained(str(folder))
        return folder


@torch.no_grad()
def _evaluate(model: nn.Module, data: TokenizedTexts, collate: PaddingCollator, batch: int = 32) -> dict[str, float]:
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss_sum, count, correct = 0.0, 0, 0
    for start in range(0, len(data), batch):
        inputs, targets = collate([data[i] for i in range(start, min(start + batch, len(data)))])
        logits = model({k: v.to(device) for k, v in inputs.items()}).float().cpu()
        if collate.causal:
            loss_sum += float(causal_lm_loss(logits, targets, reduction="sum"))
            count += int((targets[:, 1:] != _IGNORE).sum())
        else:
            loss_sum += float(nn.functional.cross_entropy(logits, targets, reduction="sum"))
            count += len(targets)
            correct += int((logits.argmax(-1) == targets).sum())
    model.train(was_training)
    found = {"val_loss": loss_sum / max(count, 1)}
    if not collate.causal:
        found["val_accuracy"] = correct / max(len(data), 1)
    return found


def _check_task(folder: Path, task: str | None) -> str:
    """The task to train: ``task`` or the folder's own; one line when it cannot be trained."""
    from accelkit.tasks import get_task
    from accelkit.workloads.hf_model import load_config, read_sentence_config

    sentence = read_sentence_config(folder) if folder.is_dir() else None
    config = load_config(folder / sentence.transformer_path if sentence else folder)
    own = infer_task(getattr(config, "architectures", None) or [], sentence is not None)
    task = task or own
    get_task(task)
    if task not in TRAINABLE_TASKS:
        use = _NOT_YET.get(task, "the transformers Trainer")
        raise ConfigError(f"--task {task}: training is not yet supported for it (accelkit train takes "
                          f"{', '.join(TRAINABLE_TASKS)}); use {use}")
    if own != task:
        raise ConfigError(f"--model {folder}: its config is a {own} model ({', '.join(config.architectures or [])}), "
                          f"not {task}; pass --task {own}, or save a {task} model of it first")
    return task


def user_training_task(model: str | Path, data: str | Path, *, task: str | None = None,
                       text_column: str | None = None, label_column: str | None = None,
                       calib_size: int | None = None, max_length: int | None = None,
                       seed: int = 0) -> UserTrainingTask:
    """The training task for a user's Hugging Face folder ``model`` on ``data`` (see the module
    docstring); ``max_length`` caps the tokens per text (default: the model's limit)."""
    from accelkit.workloads.user_model import workload_from_model

    folder = Path(model)
    if ":" in str(model) and not folder.exists():
        raise ConfigError(f"--model {model}: accelkit train --model takes a Hugging Face folder; train a "
                          "module:function model with --workload and a Workload offering train_dataset()")
    task = _check_task(folder, task)
    workload = workload_from_model(folder, data, task=task, text_column=text_column, label_column=label_column,
                                   calib_size=calib_size)
    calib, held = workload.calib_data(), workload.eval_data()
    causal = task == "causal-lm"
    if not causal and calib.labels is None:
        raise DataFileError(f"--data {data}: training a text classifier needs a label per text; pass a .jsonl/.csv "
                            "with a label column and name it with --label-column")
    tokenizer = workload.tokenizer
    limit = min(max_length or workload.model_max_length, workload.model_max_length)

    def tokenized(part: Any) -> TokenizedTexts:
        ids = tokenizer(list(part), truncation=True, max_length=limit)["input_ids"]
        return TokenizedTexts(ids, None if causal else list(part.labels))

    train_set, held_set = tokenized(calib), tokenized(held)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    collate = PaddingCollator(pad_id, causal)
    torch.manual_seed(seed)  # heads a folder lacks (a new classifier) are initialised alike every run
    net = HFForward(workload.build_model().train())
    example = collate([train_set[i] for i in range(min(4, len(train_set)))])
    return UserTrainingTask(
        name=folder.name, model=net, dataset=train_set, loss_fn=causal_lm_loss if causal else classification_loss,
        throughput_unit="samples", evaluate=lambda m: _evaluate(m, held_set, collate), example_batch=example,
        task=task, tokenizer=tokenizer, collate_fn=collate, heldout=held_set, split_report=workload.split_report,
    )
