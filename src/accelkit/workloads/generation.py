"""A causal language model writing text as its user runs it, ``model.generate`` on batches of
left-padded prompts, greedy, eager, with the default dynamic key/value cache; items are the
generated tokens, scored against the fp32 model's own greedy output on held-out prompts."""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from accelkit.errors import ConfigError, ModelFolderError
from accelkit.tasks import get_task
from accelkit.workloads.base import RunSettings, autocast_context
from accelkit.workloads.hf_model import LabelledTexts, load_config, load_hf_model
from accelkit.workloads.text import TokenizedTextWorkload

__all__ = ["DEFAULT_MAX_NEW_TOKENS", "GenerationWorkload", "check_causal_lm", "check_same_tokenizer",
           "generate_tokens"]

DEFAULT_MAX_NEW_TOKENS = 32
TASK = "text-generation"


def check_causal_lm(folder: Path, config: Any) -> None:
    """ModelFolderError unless ``config`` is an architecture transformers generates text with."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_type = getattr(config, "model_type", None)
    archs = list(getattr(config, "architectures", None) or [])
    # the saved head decides where the config names one (a BERT classifier's type also has an LM head)
    causal = (any(a.endswith(get_task("causal-lm").architectures) for a in archs) if archs
              else model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    if not causal or getattr(config, "is_encoder_decoder", False):
        archs = ", ".join(archs) or model_type
        raise ModelFolderError(f"--model {folder}: {archs} is not a causal language model; --task text-generation "
                               "needs one (GPT-2, Llama, Qwen2, Mistral, Phi ...)")


def check_same_tokenizer(tokenizer: Any, draft_tokenizer: Any, draft: Path) -> None:
    """ConfigError unless the draft model's tokenizer maps every token as the target's does:
    speculative decoding hands token ids from one model to the other."""
    if tokenizer.get_vocab() != draft_tokenizer.get_vocab() or tokenizer.eos_token != draft_tokenizer.eos_token:
        raise ConfigError(f"--draft {draft}: its tokenizer differs from the model's ({len(draft_tokenizer)} vs "
                          f"{len(tokenizer)} tokens); pass a draft trained with the model's own tokenizer")


def generate_tokens(model: Any, inputs: dict[str, torch.Tensor], max_new_tokens: int, pad_token_id: int, *,
                    stop_at_eos: bool = False, sample_seed: int | None = None,
                    eos_token_id: int | list[int] | None = None) -> torch.Tensor:
    """Up to ``max_new_tokens`` greedy new token ids per row, as ``model.generate`` writes them.
    By default EOS does not stop a row: every run writes the same number of tokens, so tokens/s
    compare; ``stop_at_eos`` stops as users' own calls do (rows that end early are padded), at
    ``eos_token_id`` when given, else at the model's EOS.
    ``sample_seed``: sample instead (``do_sample=True``, the model's own generation settings), with
    torch's generator seeded so before each batch: the same model writes the same tokens every run."""
    generate = getattr(model, "generate", None)
    if not callable(generate):
        raise ConfigError(f"the model is a {type(model).__name__} without generate(); text-generation runs "
                          "Hugging Face causal language models (or wrappers that keep generate)")
    eos = {} if stop_at_eos else {"eos_token_id": None}
    if stop_at_eos and eos_token_id is not None:
        eos = {"eos_token_id": eos_token_id}
    if sample_seed is not None:
        torch.manual_seed(sample_seed)
    out = generate(**inputs, max_new_tokens=max_new_tokens, do_sample=sample_seed is not None, num_beams=1,
                   pad_token_id=pad_token_id, **eos)
    return out[:, inputs["input_ids"].shape[1]:]


class GenerationWorkload(TokenizedTextWorkload):
    """A causal LM (``model_fn``, or read from ``hf_dir`` on first use) writing ``max_new_tokens``
    tokens after each prompt; ``draft_dir``: the user's smaller model of the same tokenizer, offered
    to speculative decoding. Prompts longer than the model's positions less the new tokens are
    truncated (counted in the data report). ``sample_seed``: sample with that seed instead of
    greedy decoding (quality is then agreement with the fp32 model's samples under the same seed)."""

    def __init__(self, name: str, model_fn: Callable[[], nn.Module] | None, tokenizer: Any,
                 calib: list[str], heldout: list[str], *, positions: int,
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, hf_dir: Path | None = None, config: Any = None,
                 draft_dir: Path | None = None, pad_set_to_eos: bool = False, split_report: dict | None = None,
                 source: dict | None = None, sample_seed: int | None = None) -> None:
        if sample_seed is not None and (isinstance(sample_seed, bool) or not isinstance(sample_seed, int)
                                        or sample_seed < 0):
            raise ConfigError(f"--seed {sample_seed}: expected a whole number ≥ 0")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ConfigError(f"--max-new-tokens {max_new_tokens}: expected a positive number of tokens to write")
        if positions - max_new_tokens < 1:
            raise ConfigError(f"--max-new-tokens {max_new_tokens}: the model takes {positions} positions in all; "
                              f"pass at most {positions - 1}")
        if model_fn is None and hf_dir is None:
            raise ConfigError(f"workload {name!r}: pass the model, or the folder it loads from")
        self.spec = get_task(TASK)
        self.name = name
        self.task = TASK
        self._model_fn = model_fn
        self.tokenizer = tokenizer
        self._calib, self._heldout = list(calib), list(heldout)
        self.max_new_tokens = max_new_tokens
        self.sample_seed = sample_seed
        self.model_max_length = positions - max_new_tokens  # the prompt's share of the positions
        self._hf_dir = hf_dir
        self.hf_config = config
        self.draft_dir = draft_dir
        self.pad_set_to_eos = pad_set_to_eos
        self.split_report = dict(split_report or {})
        self.source = dict(source or {})
        self.primary_metric = self.spec.primary_metric
        self.higher_is_better = self.spec.higher_is_better
        self.item_unit = self.spec.item_unit
        self.default_batch_size = self.spec.default_batch_size

    def offers(self) -> frozenset[str]:
        found = self.text_offers() | self.spec.offers
        return frozenset(found | {"draft-model"} if self.draft_dir is not None else found)

    def build_model(self) -> nn.Module:
        if self._model_fn is None:
            return load_hf_model(self._hf_dir, TASK, self.hf_config)
        return self._model_fn().eval()

    def model_folder(self) -> Path | None:
        """The Hugging Face folder the model loads from (None for a module function's model):
        peers that export the model themselves read it."""
        return self._hf_dir

    def draft_model(self) -> nn.Module:
        """The user's draft model (``--draft``), fp32, eval mode (workloads offering "draft-model")."""
        if self.draft_dir is None:
            raise ConfigError(f"workload {self.name!r} has no draft model; pass --draft PATH")
        return load_hf_model(self.draft_dir, TASK, load_config(self.draft_dir))

    def eval_data(self, limit: int | None = None) -> LabelledTexts:
        return LabelledTexts.of(self._heldout[:limit], None)

    def calib_data(self, limit: int | None = None) -> LabelledTexts:
        return LabelledTexts.of(self._calib[:limit], None)

    def n_items(self, data: list[str]) -> int:
        return len(data) * self.max_new_tokens

    def data_report(self, data: list[str], settings: RunSettings) -> dict[str, Any]:
        found = super().data_report(data, settings)
        found.update(prompts=len(data), max_new_tokens=self.max_new_tokens, stops_at_eos=False,
                     decoding="greedy" if self.sample_seed is None else f"sampling, seed {self.sample_seed}",
                     pad_token=self.tokenizer.pad_token,
                     pad_set_to_eos=self.pad_set_to_eos)
        return {**found, "split": self.split_report} if self.split_report else found

    def forward(self, model: Callable, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return generate_tokens(model, inputs, self.max_new_tokens, self.tokenizer.pad_token_id,
                               sample_seed=self.sample_seed)

    def quality(self, outputs: torch.Tensor, reference: torch.Tensor, data: Any) -> dict[str, float]:
        return self.spec.quality(outputs, reference)

    def time_to_first_token(self, generators: dict[str, tuple[Callable, RunSettings]], data: list[str],
                            max_batches: int = 32) -> dict[str, dict[str, float]]:
        """Milliseconds from a batch's prompts to its first new token (``generate`` writing one
        token: the prompt pass) for each of ``generators`` (name -> model, settings), over up to
        ``max_batches`` batches: p50, p95, and ``vs_first``, the median over batches of the time
        against the first generator's on the same batch. One untimed pass first (a variant's first
        call on a shape may compile or set up kernels, which the token rates leave out too), then
        every batch is timed for each generator in turn, so a drift of the machine reaches all alike."""
        batches = {name: [inputs for inputs, _ in itertools.islice(self.batches(data, settings), max_batches)]
                   for name, (_, settings) in generators.items()}
        times: dict[str, list[float]] = {name: [] for name in generators}
        with torch.inference_mode():
            for timed in (False, True):
                for i in range(max(len(b) for b in batches.values())):
                    for name, (model, settings) in generators.items():
                        if i >= len(batches[name]):
                            continue
                        with autocast_context(settings):
                            start = time.perf_counter()
                            generate_tokens(model, batches[name][i], 1, self.tokenizer.pad_token_id,
                                            sample_seed=self.sample_seed)
                            if timed:
                                times[name].append((time.perf_counter() - start) * 1e3)
        first = next(iter(times.values()))
        found = {}
        for name, spent in times.items():
            ordered = sorted(spent)
            found[name] = {"p50": statistics.median(ordered),
                           "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]}
            if len(spent) == len(first):  # the same batches: a ratio of pairs
                found[name]["vs_first"] = statistics.median(t / f for t, f in zip(spent, first, strict=True))
        return found

    def perplexity(self, model: Callable, data: list[str], settings: RunSettings, max_batches: int = 32) -> float:
        """exp of the mean next-token cross-entropy of ``model`` on the held-out prompts themselves
        (text it did not write; padding excluded, positions counted as generate counts them), over
        up to ``max_batches`` batches under ``settings``: a quality figure beside greedy agreement
        that a near-tie flipping one greedy token barely moves."""
        total, count = 0.0, 0
        with torch.inference_mode(), autocast_context(settings):
            for i, (inputs, _) in enumerate(self.batches(data, settings)):
                if i == max_batches:
                    break
                ids, mask = inputs["input_ids"], inputs["attention_mask"]
                positions = (mask.cumsum(-1) - 1).clamp(min=0)
                logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
                logp = logits[:, :-1].float().log_softmax(-1)
                nll = -logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
                scored = (mask[:, 1:] * mask[:, :-1]).bool()
                total += float(nll[scored].sum())
                count += int(scored.sum())
        if not count:
            raise ConfigError("perplexity needs prompts of at least two tokens")
        return float(torch.tensor(total / count).exp())

    def ship_spec(self) -> dict | None:
        """What a shipped folder needs to generate without the workload (export.artifact)."""
        if self.hf_config is None:
            return None
        return {"tokenizer": self.tokenizer, "config": self.hf_config,
                "pipeline": {"workload": self.name, "task": TASK, "max_length": int(self.model_max_length),
                             "input_names": list(self.input_names), "output": None,
                             "max_new_tokens": self.max_new_tokens}}
