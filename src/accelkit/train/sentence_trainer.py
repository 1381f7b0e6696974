"""sentence-transformers' ``SentenceTransformerTrainer`` as the baseline and peer rows of ``bench --task
train --model`` for a sentence-embedding folder: what a user fine-tuning embeddings runs today.

The transformers ``Trainer`` computes no contrastive loss; ``SentenceTransformerTrainer`` (a Trainer
subclass) does, with ``MultipleNegativesRankingLoss`` at accelkit's scale (20) on the same
(anchor, positive) text pairs, tokenized by the folder's tokenizer to accelkit's length limit.
It trains the very encoder accelkit's held-out evaluation reads (wrapped in a Transformer module,
pooled as accelkit pools it), paused every few steps by ``hf_trainer._PausedLoop`` so it is timed
interleaved with accelkit's rows. Costs: needs ``sentence-transformers[train]`` (it brings
``datasets``); without it the rows say so.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from torch import nn

from accelkit.errors import ConfigError, MissingDependencyError
from accelkit.train.hf_trainer import _arguments, _PausedLoop

__all__ = ["PausedSentenceTrainer", "sentence_transformer_around"]

# accelkit's pooling modes (tasks.pooling) as sentence-transformers' Pooling names them
_ST_POOLING = {"mean": "mean", "cls": "cls", "max": "max", "mean_sqrt_len": "mean_sqrt_len_tokens"}


def _import() -> Any:
    try:
        import sentence_transformers
        from sentence_transformers.util import is_training_available
    except ImportError as exc:
        raise MissingDependencyError(f"the sentence-embedding Trainer rows need sentence-transformers ({exc}); "
                                     "pip install 'sentence-transformers[train]>=6'") from exc
    if not is_training_available():
        raise MissingDependencyError("SentenceTransformerTrainer needs accelerate and datasets; pip install "
                                     "'sentence-transformers[train]>=6'")
    return sentence_transformers


def sentence_transformer_around(encoder: nn.Module, hf_dir: Path, tokenizer: Any, pooling: str,
                                max_seq_length: int) -> Any:
    """A ``SentenceTransformer`` of Transformer + Pooling whose Transformer runs ``encoder`` itself
    (trained in place) with ``tokenizer`` truncating at ``max_seq_length``, pooled by ``pooling``.

    Built from modules for a sentence-transformers folder and a plain encoder folder alike: accelkit's
    embedding is the Transformer's tokens pooled, so a folder's Normalize (cosine ignores it) or
    other modules after pooling are not what either side trains."""
    st = _import()
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    if pooling not in _ST_POOLING:
        raise ConfigError(f"pooling {pooling!r}: the SentenceTransformerTrainer rows take {', '.join(_ST_POOLING)}")
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its load report (a pooler the folder lacks) is about weights replaced next
    try:
        module = Transformer(str(hf_dir), max_seq_length=max_seq_length)
    finally:
        hf_logging.set_verbosity(verbosity)
    module.model = encoder
    module.processor = copy.deepcopy(tokenizer)  # max_seq_length sets its model_max_length: not the task's
    module.max_seq_length = max_seq_length
    width = int(encoder.config.hidden_size)
    return st.SentenceTransformer(modules=[module, Pooling(width, pooling_mode=_ST_POOLING[pooling])], device="cpu")


class PausedSentenceTrainer(_PausedLoop):
    """``SentenceTransformerTrainer.train()`` with MultipleNegativesRankingLoss(scale) on ``pairs``
    ((anchor, positive) texts), paused every ``steps_per_call`` steps (``_PausedLoop``)."""

    def __init__(self, model: Any, pairs: list[tuple[str, str]], *, flags: dict[str, Any], scale: float,
                 batch_size: int, lr: float, warmup_steps: int, seed: int, steps_per_call: int,
                 max_steps: int) -> None:
        _import()
        from datasets import Dataset
        from sentence_transformers import (
            SentenceTransformerTrainer,
            SentenceTransformerTrainingArguments,
        )
        from sentence_transformers.sentence_transformer.data_collator import (
            SentenceTransformerDataCollator,
        )
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

        if flags.get("group_by_length"):
            raise ConfigError("SentenceTransformerTrainer batches with its own samplers (batch_sampler, no_duplicates, "
                              "group_by_label); none groups by length")
        super().__init__(steps_per_call)
        owner = self

        class Counting(SentenceTransformerDataCollator):
            """Its own collator, counting the padded tokens of each batch (the FLOPs of each step)."""

            def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
                batch = super().__call__(features)
                owner.collator.elements.append(sum(int(v.numel()) for k, v in batch.items()
                                                   if k.endswith("_input_ids")))
                return batch

        class Trainer(SentenceTransformerTrainer):
            data_collator_class = Counting

            def add_model_card_callback(self, default_args_dict: dict[str, Any]) -> None:
                # the model card is never saved here; making it embeds widget examples at init and
                # draws a progress bar over the bench's status line
                pass

        self.model = model
        self.collator = _Elements()
        args = _arguments(SentenceTransformerTrainingArguments, self._folder.name, flags, batch_size=batch_size,
                          lr=lr, warmup_steps=warmup_steps, seed=seed, max_steps=max_steps)
        data = Dataset.from_dict({"anchor": [a for a, _ in pairs], "positive": [p for _, p in pairs]})
        self.trainer = Trainer(model=model, args=args, train_dataset=data,
                               loss=MultipleNegativesRankingLoss(model, scale=scale), callbacks=self.callbacks())
        self._quiet()


class _Elements:
    """What the bench reads of a row's collator: the input elements of each batch it made."""

    def __init__(self) -> None:
        self.elements: list[int] = []
