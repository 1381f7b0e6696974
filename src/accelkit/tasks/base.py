"""The contract of a model task: how its inputs are batched, which model output it reads, how it
reduces that output per item and scores it against the fp32 model's, and how it loads and ships.

Task modules import torch and transformers inside their functions: the CLI lists the tasks
(``--task`` help) without loading either.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accelkit.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = ["INPUT_KINDS", "TaskSpec", "pick_output"]

# how a task's items become model inputs: strings through the folder's tokenizer, or image files
# through its image processor (the values are the kinds of --data a task reads)
INPUT_KINDS = ("text", "images")


class TaskSpec:
    """One model task (a subclass per task, registered with ``register_task``).

    Class attributes describe the task; methods hold what differs between tasks. A workload
    batches by ``inputs``, reads ``pick_output``, reduces with ``reduce`` and scores with
    ``quality``; a shipped model loads with ``model_class`` and ``load_preprocessor``.
    """

    name: str = ""
    inputs: str = "text"  # one of INPUT_KINDS
    output: str = "logits"  # the model output read when the user names none (--output)
    primary_metric: str = "agreement"
    higher_is_better: bool = True
    item_unit: str = "sentences"
    default_batch_size: int = 32
    auto_class: str = "AutoModel"  # the transformers Auto class that loads a model for the task
    preprocessor_class: str = "AutoTokenizer"  # the transformers class that loads its tokenizer/processor
    # what a shipped model of this task offers users beside being called on model inputs:
    # "encode" (texts in, embeddings out, as sentence-transformers has), "generate" (prompts in,
    # text out) or "__call__" (nothing more)
    method: str = "__call__"
    architectures: tuple[str, ...] = ()  # config.architectures suffixes that imply this task
    # True: claims a model only when every architecture ends with one of ``architectures`` and no
    # other task claims one of them (feature-extraction's "...Model" also ends "...LMHeadModel")
    fallback: bool = False
    sentence_transformers: bool = False  # a sentence-transformers folder (modules.json) is this task
    offers: frozenset[str] = frozenset()  # keys of workloads.base.OFFERS a workload of this task adds

    def __setattr__(self, name: str, value: Any) -> None:
        # one shared instance per task: a change would reach every workload of the task
        raise AttributeError(f"task {self.name!r} is read-only; subclass it to change {name!r}")

    def check(self) -> None:
        """ConfigError naming the attribute a task module got wrong (run at registration)."""
        if not self.name or self.name != self.name.strip().lower() or " " in self.name:
            raise ConfigError(f"task class {type(self).__name__}: name {self.name!r}; set a lower-case name "
                              "like 'token-classification'")
        if self.inputs not in INPUT_KINDS:
            raise ConfigError(f"task {self.name!r}: inputs {self.inputs!r}; expected one of {INPUT_KINDS}")
        if self.method not in ("encode", "generate", "__call__"):
            raise ConfigError(f"task {self.name!r}: method {self.method!r}; expected 'encode', 'generate' or "
                              "'__call__'")
        if not self.primary_metric or not self.auto_class or not self.output:
            raise ConfigError(f"task {self.name!r}: primary_metric, auto_class and output must be set")

    def pick_output(self, out: Any, name: str | None = None) -> torch.Tensor:
        """The tensor this task reads from a model's output (``name``: the user's ``--output``)."""
        return pick_output(out, self.output, name)

    def reduce(self, output: torch.Tensor, inputs: dict[str, torch.Tensor], *, pooling: str = "mean",
               width: int = 512) -> torch.Tensor:
        """One fixed-width row per item of a batch, so batches of different padded lengths (and
        orders) reassemble into one tensor. ``pooling``: the folder's pooling mode (embeddings);
        ``width``: the model's maximum length (per-token outputs). By default the output as it is."""
        return output

    def quality(self, outputs: torch.Tensor, reference: torch.Tensor,
                labels: Sequence[Any] | None = None) -> dict[str, float]:
        """Quality of ``outputs`` against the fp32 model's ``reference`` (and the items' ``labels``,
        in the form ``labels`` returns, when the data has them); includes ``primary_metric``."""
        raise NotImplementedError(f"task {self.name!r} defines no quality")

    def labels(self, raw: list | None, config: Any, source: Path) -> list | None:
        """The user's labels (one raw label per item, from ``source``) as ``quality`` reads them,
        or None when the task does not score labels."""
        return None

    def prepare_config(self, config: Any) -> None:
        """Adjust a model config in place before the model is built or loaded."""

    def prepare_tokenizer(self, tokenizer: Any, folder: Path) -> None:
        """Adjust the tokenizer in place before batching (``folder`` names it in errors)."""

    def model_class(self) -> Any:
        """The transformers Auto class that loads a model for this task."""
        import transformers

        return getattr(transformers, self.auto_class)

    def load_preprocessor(self, folder: Path) -> Any:
        """The folder's tokenizer or image processor (local files only, no remote code)."""
        import transformers

        cls = getattr(transformers, self.preprocessor_class)
        return cls.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)


def pick_output(out: Any, prefer: str = "logits", name: str | None = None) -> torch.Tensor:
    """The tensor to read from a model's output: a tensor, a tuple (its first element), a dict or
    Hugging Face ``ModelOutput`` (``name``, else ``prefer``, else logits / last_hidden_state /
    pooler_output, else its first tensor)."""
    import torch

    if isinstance(out, torch.Tensor):
        return out
    if name is not None:
        value = out.get(name) if hasattr(out, "get") else getattr(out, name, None)
        if not isinstance(value, torch.Tensor):
            keys = list(out.keys()) if hasattr(out, "keys") else type(out).__name__
            raise ConfigError(f"--output {name!r}: the model's output has no such tensor (it has {keys})")
        return value
    if hasattr(out, "keys"):
        for key in (prefer, "logits", "last_hidden_state", "pooler_output"):
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
