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

TRAINABLE_TASKS = ("text-classification", "causal-lm", "sentence-embedding", "image-classification")
# a folder of the key's task may be trained as these tasks too (a plain encoder gets pooling)
_ALSO_TRAINS_AS = {"feature-extraction": ("sentence-embedding",)}
# tasks a folder may have that training does not offer yet, and what to use meanwhile
_NOT_YET = {
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
    heldout: Dataset | None = None
    split_report: dict | None = None
    # writes the trained model into an empty folder (default: save_pretrained + the tokenizer)
    writer: Callable[[Path], None] | None = None
    # sentence-embedding: how this task tokenizes and pools (hf_dir, tokenizer, pooling,
    # max_seq_length), for the SentenceTransformer the bench's SentenceTransformerTrainer rows
    # build around the encoder (accelkit.train.sentence_trainer.sentence_transformer_around)
    sentence_source: dict[str, Any] | None = None

    @property
    def hf_model(self) -> nn.Module:
        return self.model.model

    def save(self, folder: Path) -> Path:
        """The trained model as a Hugging Face folder (safetensors weights, config, tokenizer; for
        sentence-embedding the sentence-transformers modules too), written beside and renamed."""
        import os
        import shutil

        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        if self.writer is not None:
            self.writer(tmp)
        else:
            self.hf_model.save_pretrained(str(tmp), safe_serialization=True)
            self.tokenizer.save_pretrained(str(tmp))
        if folder.exists():  # an earlier run's model: swap it out only once the new one is complete
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
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
    if own != task and task not in _ALSO_TRAINS_AS.get(own, ()):
        raise ConfigError(f"--model {folder}: its config is a {own} model ({', '.join(config.architectures or [])}), "
                          f"not {task}; pass --task {own}, or save a {task} model of it first")
    return task


def user_training_task(model: str | Path, data: str | Path, *, task: str | None = None,
                       text_column: str | None = None, label_column: str | None = None,
                       positive_column: str | None = None, calib_size: int | None = None,
                       max_length: int | None = None, seed: int = 0) -> UserTrainingTask:
    """The training task for a user's Hugging Face folder ``model`` on ``data`` (see the module
    docstring); ``max_length`` caps the tokens per text (default: the model's limit).

    ``task="sentence-embedding"`` (a sentence-transformers folder, or a plain encoder) trains on
    (anchor, positive) pairs with MultipleNegativesRankingLoss (``accelkit.train.user_embedding``);
    ``text_column``/``positive_column`` name the pair's columns."""
    from accelkit.workloads.user_model import workload_from_model

    folder = Path(model)
    if ":" in str(model) and not folder.exists():
        if task in (None, "image-classification") and Path(data).is_dir():
            _no_text_options(text_column, label_column, positive_column, max_length)
            return _image_training_task(str(model), data, calib_size=calib_size, seed=seed)
        raise ConfigError(f"--model {model}: accelkit train --model takes a Hugging Face folder, or a module:function "
                          "with a folder of images (image-classification); train another module:function model with "
                          "--workload and a Workload offering train_dataset()")
    task = _check_task(folder, task)
    if task == "image-classification":
        _no_text_options(text_column, label_column, positive_column, max_length)
        return _image_training_task(folder, data, calib_size=calib_size, seed=seed)
    if task == "sentence-embedding":
        if label_column is not None:
            raise ConfigError("--label-column: sentence-embedding trains on (anchor, positive) pairs, which have "
                              "no labels; drop it (--text-column and --positive-column name the pair)")
        return _embedding_training_task(folder, data, anchor_column=text_column, positive_column=positive_column,
                                        calib_size=calib_size, max_length=max_length, seed=seed)
    if positive_column is not None:
        raise ConfigError(f"--positive-column goes with --task sentence-embedding, not {task}; drop it")
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


def _embedding_training_task(folder: Path, data: str | Path, *, anchor_column: str | None,
                             positive_column: str | None, calib_size: int | None, max_length: int | None,
                             seed: int) -> UserTrainingTask:
    """Contrastive training of a sentence-transformers folder (or plain encoder) on text pairs."""
    from accelkit.data.user_files import read_text_pairs, split_data
    from accelkit.errors import ModelFolderError
    from accelkit.tasks import get_task
    from accelkit.train.user_embedding import (
        EmbeddingForward,
        PairCollator,
        TokenizedPairs,
        evaluate_pairs,
        multiple_negatives_ranking_loss,
        save_sentence_folder,
    )
    from accelkit.workloads.hf_model import (
        load_config,
        load_hf_model,
        model_max_length,
        read_sentence_config,
    )

    sentence = read_sentence_config(folder)
    hf_dir = folder / sentence.transformer_path if sentence else folder
    config = load_config(hf_dir)
    pairs = read_text_pairs(data, anchor_column=anchor_column, positive_column=positive_column)
    calib, held, report = split_data(pairs, calib_size=calib_size)
    try:
        tokenizer = get_task("sentence-embedding").load_preprocessor(hf_dir)
    except (ValueError, OSError, KeyError, TypeError) as exc:
        raise ModelFolderError(f"--model {folder}: no usable tokenizer files ({type(exc).__name__}); save the "
                               "tokenizer into the folder with tokenizer.save_pretrained") from exc
    own_limit = model_max_length(tokenizer, config, sentence)
    limit = min(max_length or own_limit, own_limit)

    def tokenized(part: Any) -> TokenizedPairs:
        anchors = tokenizer([a for a, _ in part.items], truncation=True, max_length=limit)["input_ids"]
        positives = tokenizer([p for _, p in part.items], truncation=True, max_length=limit)["input_ids"]
        return TokenizedPairs(anchors, positives, [(a, p) for a, p in part.items])

    train_set, held_set = tokenized(calib), tokenized(held)
    collate = PairCollator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    pooling = sentence.pooling if sentence else "mean"
    torch.manual_seed(seed)
    net = EmbeddingForward(load_hf_model(hf_dir, "sentence-embedding", config).train(), pooling)
    example = collate([train_set[i] for i in range(min(4, len(train_set)))])
    transformer_path = sentence.transformer_path if sentence else ""

    def write(target: Path) -> None:
        save_sentence_folder(target, folder, transformer_path, net.model, tokenizer, pooling, limit)

    return UserTrainingTask(
        name=folder.name, model=net, dataset=train_set, loss_fn=multiple_negatives_ranking_loss,
        throughput_unit="samples", evaluate=lambda m: evaluate_pairs(m, held_set, collate), example_batch=example,
        task="sentence-embedding", tokenizer=tokenizer, collate_fn=collate, heldout=held_set,
        split_report={**report, "pairs": True}, writer=write,
        sentence_source={"hf_dir": hf_dir, "tokenizer": tokenizer, "pooling": pooling, "max_seq_length": limit},
    )


def _no_text_options(text_column: str | None, label_column: str | None, positive_column: str | None,
                     max_length: int | None) -> None:
    named = [flag for flag, value in (("--text-column", text_column), ("--label-column", label_column),
                                      ("--positive-column", positive_column), ("--max-length", max_length))
             if value is not None]
    if named:
        raise ConfigError(f"{', '.join(named)}: an image classifier reads its classes from the sub-folders of "
                          "--data; drop them")


def _image_training_task(model: str | Path, data: str | Path, *, calib_size: int | None, seed: int) -> UserTrainingTask:
    """An image classifier (a Hugging Face folder, or ``module:function``) on a class-per-sub-folder
    image folder (``accelkit.train.user_image``)."""
    from torch.utils.data import default_collate

    from accelkit.data.user_files import read_data_file, split_data
    from accelkit.errors import ModelFolderError
    from accelkit.tasks import get_task
    from accelkit.train.checkpoint import save_weights
    from accelkit.train.user_image import (
        ImageForward,
        ImageItems,
        ProcessorTransform,
        ResizeNormalize,
        evaluate_images,
    )
    from accelkit.workloads.hf_model import load_config, load_hf_model

    user = read_data_file(data)
    if user.kind != "images":
        raise DataFileError(f"--data {data}: --task image-classification trains on a folder of images, one "
                            "sub-folder per class (<folder>/<class>/<image>)")
    if user.labels is None:
        raise DataFileError(f"--data {data}: training an image classifier needs every image in a sub-folder named "
                            "after its class (<folder>/<class>/<image>); move the images so")
    calib, held, report = split_data(user, calib_size=calib_size)
    spec = get_task("image-classification")
    torch.manual_seed(seed)  # a head the folder lacks is initialised alike every run
    if isinstance(model, Path):
        config = load_config(model)
        try:
            processor = spec.load_preprocessor(model)
        except (ValueError, OSError, KeyError, TypeError) as exc:
            raise ModelFolderError(f"--model {model}: no usable image processor (preprocessor_config.json); save it "
                                   "into the folder with processor.save_pretrained") from exc
        ids = spec.labels(calib.labels, config, calib.source), spec.labels(held.labels, config, held.source)
        transform: Any = ProcessorTransform(processor)
        net = ImageForward(load_hf_model(model, "image-classification", config).train(), hugging_face=True)
        name = model.name

        def write(target: Path) -> None:
            net.model.save_pretrained(str(target), safe_serialization=True)
            processor.save_pretrained(str(target))
    else:
        from accelkit.workloads.user_model import _call_factory

        made = _call_factory(model)
        module = made if isinstance(made, nn.Module) else (made.get("model") if isinstance(made, dict) else None)
        if not isinstance(module, nn.Module):
            raise ConfigError(f"--model {model}: the function returned {type(made).__name__}; expected an nn.Module "
                              "or a dict with 'model' (and optional 'image_size', default 224)")
        size = int(made.get("image_size", 224)) if isinstance(made, dict) else 224
        names = sorted({str(label) for label in user.labels})  # class ids: the sub-folders in name order
        ids = [names.index(str(x)) for x in calib.labels], [names.index(str(x)) for x in held.labels]
        transform = ResizeNormalize(size)
        net = ImageForward(module.train(), hugging_face=False)
        name = model.rpartition(":")[2]

        def write(target: Path) -> None:
            import json

            save_weights(net.model.state_dict(), target / "model.safetensors")
            (target / "classes.json").write_text(json.dumps({"classes": names, "image_size": size}, indent=2))
    train_set = ImageItems(calib.items, ids[0], transform)
    held_set = ImageItems(held.items, ids[1], transform)
    first = [train_set[i] for i in range(min(4, len(train_set)))]
    example = (torch.stack([x for x, _ in first]), torch.tensor([c for _, c in first]))
    with torch.no_grad():
        width = net.eval()(example[0]).shape[-1]
    net.train()
    wanted = len(names) if not isinstance(model, Path) else width
    if width != wanted:
        raise DataFileError(f"--data {data} has {wanted} classes ({', '.join(names[:8])}) but --model {model} gives "
                            f"{width} logits; return a model with {wanted} outputs, one per sub-folder")
    return UserTrainingTask(
        name=name, model=net, dataset=train_set, loss_fn=classification_loss, throughput_unit="samples",
        evaluate=lambda m: evaluate_images(m, held_set), example_batch=example, task="image-classification",
        tokenizer=None, collate_fn=default_collate, heldout=held_set, split_report=report, writer=write,
    )
