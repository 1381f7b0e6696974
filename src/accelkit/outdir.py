"""The one output-folder policy: never delete what accelkit did not write.

A folder accelkit writes into may already exist. When every file in it is one accelkit
writes there (``owned``, paths relative to the folder), it is accelkit's own earlier output and
may be replaced. A file accelkit did not write (``notes.txt`` beside a saved model, a user's
data) makes the folder refused with one line, unless the caller passes ``overwrite=True`` —
and even then only the owned files are replaced; the foreign ones stay where they are.

Temporary folders come from ``make_temp_dir``: ``tempfile.mkdtemp`` creates them 0700, which
would make a saved model or a shared cache unreadable to everyone else once renamed into place.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from accelkit.errors import OutputPathError

__all__ = [
    "OPTIMIZE_FILES",
    "SAVED_MODEL_FILES",
    "foreign_files",
    "make_temp_dir",
    "prepare_output_dir",
]

# what accelkit.save writes into its folder
SAVED_MODEL_FILES: frozenset[str] = frozenset({"plan.json", "model.onnx", "model.safetensors", "model.xml",
                                              "model.bin"}) | frozenset({
    # a shipped folder's architecture and tokenizer / image processor (accelkit.export.artifact)
    "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
    "vocab.json", "merges.txt", "added_tokens.json", "spiece.model", "sentencepiece.bpe.model",
    "preprocessor_config.json", "chat_template.jinja",
    # what SentenceTransformer(folder, backend="onnx") reads (accelkit.export.st_layout)
    "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json", "1_Pooling/config.json",
    "onnx/model.onnx"})
# what accelkit optimize writes into --out (the saved model sits in model/)
OPTIMIZE_FILES: frozenset[str] = frozenset(
    {"plan.json", "results.json", "report.html", "candidates.json", "log.txt"}
    | {f"model/{n}" for n in SAVED_MODEL_FILES}
)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_temp_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """``tempfile.mkdtemp`` in ``parent``, then the permissions a plain ``mkdir`` would give."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def foreign_files(path: str | os.PathLike, owned: Iterable[str]) -> list[str]:
    """Files (and symlinks) under ``path`` whose relative path is not in ``owned``, sorted."""
    root = Path(path)
    owned = set(owned)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        for name in filenames + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            rel = (rel_dir / name).as_posix()
            if rel not in owned:
                found.append(rel)
    return sorted(found)


def prepare_output_dir(
    path: str | os.PathLike, *, overwrite: bool, owned: Iterable[str], create: bool = True
) -> Path:
    """Check that accelkit may write its ``owned`` files into folder ``path``; returns the path.

    Raises OutputPathError when ``path`` is a file, cannot be created or written, or holds files
    accelkit did not write and ``overwrite`` is False. With ``overwrite=True`` the caller must
    replace only the owned files (foreign ones are kept). ``create``: make the folder now.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{path} is a file, not a folder; choose a folder name for the output")
    if path.is_dir():
        foreign = foreign_files(path, owned)
        if foreign and not overwrite:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise OutputPathError(
                f"{path} holds files accelkit did not write ({shown}); choose a new folder, or pass "
                "--overwrite (overwrite=True) to replace only accelkit's own files there and keep these"
            )
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(f"cannot create {path} ({exc.strerror}); choose a writable output folder") from exc
    writable_dir = path if path.is_dir() else path.parent
    if not os.access(writable_dir, os.W_OK):
        raise OutputPathError(f"{writable_dir} is not writable; choose another output folder")
    return path
