"""The transformers ``Trainer`` as the baseline and peer rows of ``bench --task train --model``: its
real ``train()`` loop, run in a thread that pauses every few steps so it is timed interleaved.

Each row trains its own copy of the user's model from the same init, on the same tokenized texts
padded per batch (what the Trainer's default collator does) or the same preprocessed images (as
``{pixel_values, labels}``), at the same batch size, LR and warm-up as accelkit's variants; only
the Trainer flags a user would turn on differ. ``_PausedLoop`` is the pausing both this and the
sentence-transformers Trainer rows (``accelkit.train.sentence_trainer``) run under.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from typing import Any

import torch
from torch import nn

from accelkit.errors import ConfigError, MissingDependencyError
from accelkit.train.user_model import PaddingCollator

__all__ = ["TRAINER_ROWS", "PausedTrainer"]

_log = logging.getLogger(__name__)

# row name -> the TrainingArguments flags it turns on; "default" is what a user runs today
TRAINER_ROWS: dict[str, dict[str, Any]] = {
    "default": {},
    "trainer-bf16": {"bf16": True},
    "trainer-compile": {"torch_compile": True},
    "trainer-group-by-length": {"group_by_length": True},
}


class _TrainerCollator:
    """PaddingCollator's batch as the keyword inputs a Trainer passes to the model (labels included):
    the model computes the same loss accelkit's loss_fn does."""

    def __init__(self, collate: PaddingCollator) -> None:
        self.collate = collate
        self.elements: list[int] = []  # padded tokens of each batch made: the FLOPs of each step

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        inputs, targets = self.collate([(item["input_ids"], item.get("labels")) for item in items])
        self.elements.append(int(inputs["input_ids"].numel()))
        return {**inputs, "labels": targets}


class _ImageCollator:
    """``ImageItems``' (pixels, class id) items as the Trainer's keyword inputs ``{pixel_values,
    labels}``: the model computes its own cross-entropy, the loss accelkit's rows train with."""

    def __init__(self) -> None:
        self.elements: list[int] = []  # pixel values of each batch (accelkit's rows count them so)

    def __call__(self, items: list[tuple[torch.Tensor, int]]) -> dict[str, torch.Tensor]:
        pixels = torch.stack([pixels for pixels, _ in items])
        self.elements.append(int(pixels.numel()))
        return {"pixel_values": pixels, "labels": torch.tensor([c for _, c in items], dtype=torch.long)}


def _version_flags(arguments_class: type, flags: dict[str, Any]) -> dict[str, Any]:
    """``flags`` as this transformers spells them: 5.x turned ``group_by_length=True`` into
    ``train_sampling_strategy="group_by_length"``."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(arguments_class)}
    if flags.get("group_by_length") and "group_by_length" not in fields:
        return {**{k: v for k, v in flags.items() if k != "group_by_length"},
                "train_sampling_strategy": "group_by_length"}
    return flags


class _PausedLoop:
    """A Trainer's ``train()`` in a thread that stops after every ``steps_per_call`` optimizer steps
    until ``run()`` lets it take the next ones; ``close()`` ends it. The first ``run()`` also
    builds the Trainer's optimizer and data loader (and compiles), as in a warm-up call.

    Shared by the transformers ``Trainer`` rows and the ``SentenceTransformerTrainer`` rows (a
    Trainer subclass): each builds ``self.trainer`` with ``self.callbacks()`` and a collator that
    records ``elements`` (input elements of each batch, the FLOPs of each step)."""

    def __init__(self, steps_per_call: int) -> None:
        self.steps_per_call = steps_per_call
        self.steps = 0
        self.error: BaseException | None = None
        self.trainer: Any = None
        self.collator: Any = None
        self._go, self._done = threading.Semaphore(0), threading.Semaphore(0)
        self._stop = False
        self._thread: threading.Thread | None = None
        self._threads = torch.get_num_threads()
        self._folder = tempfile.TemporaryDirectory(prefix="accelkit-trainer-")

    def callbacks(self) -> list[Any]:
        """The TrainerCallback that pauses the loop at every ``steps_per_call``-th step end."""
        from transformers import TrainerCallback

        owner = self

        class Pause(TrainerCallback):
            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                owner.steps += 1
                if owner.steps % owner.steps_per_call == 0:
                    owner._done.release()
                    owner._go.acquire()
                    if owner._stop:
                        control.should_training_stop = True

            def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
                _log.info("Trainer %s", logs)  # to our log, not the terminal

        return [Pause()]

    def _quiet(self) -> None:
        from transformers import PrinterCallback

        self.trainer.remove_callback(PrinterCallback)  # it prints the Trainer's logs (disable_tqdm adds it)

    def _train(self) -> None:
        # intra-op threads are per OS thread: a new one would start with every core of the host
        torch.set_num_threads(self._threads)
        try:
            self.trainer.train()
        except BaseException as exc:  # reported by the run() that waits for it
            self.error = exc
        finally:
            self._done.release()

    def run(self) -> None:
        """Let the Trainer take its next ``steps_per_call`` steps, and wait for them."""
        if self._thread is None:
            self._threads = torch.get_num_threads()
            self._thread = threading.Thread(target=self._train, name="accelkit-trainer", daemon=True)
            self._thread.start()
        else:
            self._go.release()
        self._done.acquire()
        if self.error is not None:
            raise self.error
        if self._thread is not None and not self._thread.is_alive():
            raise RuntimeError(f"the Trainer stopped after {self.steps} steps")

    def close(self) -> None:
        """End the Trainer's loop after the step it paused at."""
        if self._thread is not None and self._thread.is_alive():
            self._stop = True
            self._go.release()
            self._thread.join()
        self._folder.cleanup()


def _arguments(arguments_class: type, folder: str, flags: dict[str, Any], *, batch_size: int, lr: float,
               warmup_steps: int, seed: int, max_steps: int) -> Any:
    """The TrainingArguments (or its sentence-transformers subclass) every Trainer row shares: the
    batch size, LR, warm-up then constant, clipping and steps of accelkit's rows; ``flags`` on top."""
    return arguments_class(
        output_dir=folder, per_device_train_batch_size=batch_size, max_steps=max_steps,
        learning_rate=lr, lr_scheduler_type="constant_with_warmup", warmup_steps=warmup_steps, weight_decay=0.0,
        max_grad_norm=1.0, seed=seed, report_to=[], disable_tqdm=True, logging_strategy="no",
        save_strategy="no", use_cpu=not torch.cuda.is_available(), **_version_flags(arguments_class, flags),
    )


def _trainer_classes() -> tuple[type, type]:
    try:
        from transformers import Trainer, TrainingArguments
    except ImportError as exc:  # Trainer imports accelerate
        raise MissingDependencyError(f"the transformers Trainer needs accelerate ({exc}); pip install "
                                     "'accelerate>=1.0'") from exc
    return Trainer, TrainingArguments


class PausedTrainer(_PausedLoop):
    """The transformers ``Trainer`` on a user's text model (``TokenizedTexts``, padded per batch) or
    Hugging Face image classifier (``ImageItems``, stacked as ``pixel_values``), paused every
    ``steps_per_call`` steps (``_PausedLoop``). The model computes its own loss from ``labels``."""

    def __init__(self, hf_model: nn.Module, data: Any, collate: Any, *, flags: dict[str, Any],
                 batch_size: int, lr: float, warmup_steps: int, seed: int, steps_per_call: int, max_steps: int) -> None:
        from accelkit.train.user_image import ImageItems

        Trainer, TrainingArguments = _trainer_classes()
        rows: Any
        if isinstance(data, ImageItems):
            if flags.get("group_by_length"):
                raise ConfigError("group_by_length groups texts by token count; images all have one size, so "
                                  "it would be the default row again")
            rows, collator = data, _ImageCollator()  # decoded per read, as accelkit's rows read them
        else:
            rows = [{"input_ids": ids} if cls is None else {"input_ids": ids, "labels": cls}
                    for ids, cls in (data[i] for i in range(len(data)))]
            collator = _TrainerCollator(collate)
        super().__init__(steps_per_call)
        self.model = hf_model
        args = _arguments(TrainingArguments, self._folder.name, flags, batch_size=batch_size, lr=lr,
                          warmup_steps=warmup_steps, seed=seed, max_steps=max_steps)
        self.collator = collator
        self.trainer = Trainer(model=hf_model, args=args, train_dataset=rows, data_collator=self.collator,
                               callbacks=self.callbacks())
        self._quiet()
