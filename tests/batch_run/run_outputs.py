"""What the run tests share: a corpus file with a blank line, a prompts file, and a run's output
read back in id order (embeddings with a cosine to compare them, or generated texts)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq


def corpus_file(root: Path, sentences: list[str], n: int = 120) -> Path:
    """``n`` sentences, one a line, with a blank line (not an item) at line 5."""
    lines = list(sentences[:n])
    lines.insert(5, "")
    path = root / "corpus.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_output(out: Path) -> tuple[list, np.ndarray]:
    table = pq.read_table(out).sort_by("id")
    return table.column("id").to_pylist(), np.array(table.column("embedding").to_pylist(), np.float32)


def prompts_file(root: Path, sentences: list[str], n: int = 22) -> tuple[Path, list[str]]:
    """``n`` prompts of 2 to 7 words, one a line, and the list of them."""
    prompts = [" ".join(s.split()[: 2 + i % 6]) for i, s in enumerate(sentences[:n])]
    path = root / "prompts.txt"
    path.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    return path, prompts


def read_texts(out: Path) -> tuple[list, list[str]]:
    table = pq.read_table(out).sort_by("id")
    return table.column("id").to_pylist(), table.column("text").to_pylist()


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
