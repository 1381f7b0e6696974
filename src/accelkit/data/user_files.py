"""Read a user's ``--data`` file (text, JSONL, CSV/TSV, image folder, .npy, .safetensors).

It buys one checked, in-memory data set and a seeded calibration/held-out split that is
the same on every machine; it costs one full read (every image is decoded once) up front.
"""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from accelkit.errors import DataFileError

__all__ = [
    "DATA_SUFFIXES",
    "IMAGE_SUFFIXES",
    "UserData",
    "PAIR_COLUMNS",
    "pick_text_column",
    "read_data_file",
    "read_text_pairs",
    "split_data",
]

TEXT_SUFFIXES = (".txt", ".text")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
DATA_SUFFIXES = (*TEXT_SUFFIXES, ".jsonl", ".csv", ".tsv", ".npy", ".safetensors")
_TEXT_KEYS = ("text", "sentence", "prompt")
_LABEL_KEYS = ("label", "labels")
_DEFAULT_PART = 1024
# (anchor, positive) column names read by default, first match wins: sentence-transformers'
# own names for a pair data set, then those of its NLI/STS examples and of retrieval data
PAIR_COLUMNS = (("anchor", "positive"), ("sentence1", "sentence2"), ("query", "positive"), ("query", "document"))


@dataclass
class UserData:
    """A user's data set, read whole.

    kind "text": ``items`` are strings; "images": ``items`` are image paths (sorted);
    "tensors": ``items`` is empty and the rows live in ``tensors`` ({"inputs": (N, ...),
    optional "labels": (N, ...)}); ``labels`` is then None (the labels are the tensor).
    ``labels`` holds one raw label (str or int) per item, or is None when unlabelled.
    """

    kind: str
    items: list
    labels: list | None
    source: Path
    tensors: dict[str, torch.Tensor] | None = None

    def __len__(self) -> int:
        if self.tensors is not None:
            return int(self.tensors["inputs"].shape[0])
        return len(self.items)

    def subset(self, index: list[int]) -> UserData:
        """The rows at ``index``, in that order, as a new UserData of the same kind.

        Costs a copy of the picked rows (tensors are gathered with ``index_select``).
        An index outside ``0..len-1`` raises IndexError (negative indices are refused).
        """
        n = len(self)
        bad = [i for i in index if not 0 <= i < n]
        if bad:
            raise IndexError(f"subset index {bad[0]} is outside 0..{n - 1}")
        if self.tensors is not None:
            idx = torch.tensor(list(index), dtype=torch.long)
            picked = {k: v.index_select(0, idx) for k, v in self.tensors.items()}
            return UserData(self.kind, [], None, self.source, picked)
        items = [self.items[i] for i in index]
        labels = None if self.labels is None else [self.labels[i] for i in index]
        return UserData(self.kind, items, labels, self.source, None)


def read_data_file(
    path: str | Path, *, text_column: str | None = None, label_column: str | None = None
) -> UserData:
    """Read ``path`` by its suffix (a folder is read as images) into a checked UserData.

    ``text_column``/``label_column`` pick the fields of a .jsonl/.csv/.tsv file; without
    them the text is "text", else "sentence", else the only string field, and the label
    is "label"/"labels" when present. Every problem (missing path or column, bad line,
    undecodable image, fewer than 2 items...) raises DataFileError with one line naming
    the file, the problem and the fix. It costs a full read: images are all decoded once.
    """
    path = Path(path)
    if not path.exists():
        raise DataFileError(
            f"data path {path} does not exist; pass an existing file or folder to --data"
        )
    suffix = path.suffix.lower()
    tabular = suffix in (".jsonl", ".csv", ".tsv")
    if (text_column is not None or label_column is not None) and not tabular:
        what = "a folder" if path.is_dir() else f"a {suffix or 'suffix-less'} file"
        raise DataFileError(
            f"{path} is {what}, which has no columns; --text-column/--label-column apply "
            "to .jsonl, .csv and .tsv files only, so drop them"
        )
    if path.is_dir():
        data = _read_images(path)
    elif suffix in TEXT_SUFFIXES:
        data = UserData("text", _text_lines(path), None, path)
    elif suffix == ".jsonl":
        data = _read_jsonl(path, text_column, label_column)
    elif suffix in (".csv", ".tsv"):
        data = _read_table(path, text_column, label_column)
    elif suffix == ".npy":
        data = _read_npy(path)
    elif suffix == ".safetensors":
        data = _read_safetensors(path)
    else:
        got = f"suffix {suffix!r}" if suffix else "no suffix"
        raise DataFileError(
            f"{path} has {got}, which accelkit does not read; accepted: "
            f"{' '.join(DATA_SUFFIXES)}, or a folder of images ({' '.join(IMAGE_SUFFIXES)})"
        )
    n = len(data)
    if n == 0:
        raise DataFileError(
            f"{path} has no items; pass a --data file with at least 2 items "
            "(one for calibration, one held out)"
        )
    if n < 2:
        raise DataFileError(
            f"{path} has 1 item; need at least 2 (one for calibration, one held out), "
            "so add more items"
        )
    return data


def split_data(
    data: UserData,
    *,
    calib_size: int | None = None,
    eval_size: int | None = None,
    seed: int = 0,
) -> tuple[UserData, UserData, dict[str, Any]]:
    """Split ``data`` into (calibration, held-out, report) by a seeded permutation.

    The permutation is ``random.Random(seed).shuffle(list(range(n)))``, identical on every
    machine and Python 3 version. Calibration is its first ``calib_size`` rows (default
    ``min(n // 2, 1024)``, at least 1), kept in permutation order; held-out is the next up
    to ``eval_size`` rows (default up to 1024), sorted ascending so results read stably;
    the rest is unused. The report has n_total, n_calib, n_heldout, n_unused and seed.
    Costs a copy of both parts; the input is not modified.
    """
    n = len(data)
    if n < 2:
        raise DataFileError(
            f"{data.source} has {n} item{'' if n == 1 else 's'}; need at least 2 "
            "(one for calibration, one held out), so add more items"
        )
    if calib_size is None:
        calib_size = max(1, min(n // 2, _DEFAULT_PART))
    elif calib_size < 1:
        raise DataFileError(
            f"--calib-size {calib_size}: need at least 1 calibration item; pass 1..{n - 1}"
        )
    elif calib_size >= n:
        raise DataFileError(
            f"{data.source} has {n} items but --calib-size is {calib_size}; at least one "
            f"must stay held out, so pass --calib-size {n - 1} or less"
        )
    remaining = n - calib_size
    if eval_size is None:
        eval_size = min(remaining, _DEFAULT_PART)
    elif eval_size < 1:
        raise DataFileError(
            f"--eval-size {eval_size}: need at least 1 held-out item; pass a positive count"
        )
    perm = list(range(n))
    random.Random(seed).shuffle(perm)
    calib_index = perm[:calib_size]
    heldout_index = sorted(perm[calib_size : calib_size + eval_size])
    report = {
        "n_total": n,
        "n_calib": len(calib_index),
        "n_heldout": len(heldout_index),
        "n_unused": n - len(calib_index) - len(heldout_index),
        "seed": seed,
    }
    return data.subset(calib_index), data.subset(heldout_index), report


# --- readers ---------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    """An exception's message squeezed onto one line (library messages may hold newlines)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _read_utf8(path: Path) -> str:
    """The file as text; a binary or non-UTF-8 file raises DataFileError (a BOM is dropped)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataFileError(
            f"{path} cannot be read ({exc.strerror or _one_line(exc)}); "
            "check its permissions or pass another --data file"
        ) from exc
    problem = None
    if b"\x00" in raw:
        problem = "contains NUL bytes"
    else:
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            problem = f"has a non-UTF-8 byte at offset {exc.start}"
    raise DataFileError(
        f"{path} is not a UTF-8 text file ({problem}); pass a UTF-8 text file with one item a line"
    )


def _text_lines(path: Path) -> list[str]:
    # split on "\n" only: str.splitlines would also cut at \x0c, \u2028... inside an item
    lines = (line.rstrip() for line in _read_utf8(path).split("\n"))
    return [line for line in lines if line]


def _pick_label(path: Path, keys: list[str], label_column: str | None, where: str) -> str | None:
    if label_column is not None:
        if label_column not in keys:
            raise DataFileError(
                f"{path} has no {where} {label_column!r} ({where}s: {', '.join(keys)}); "
                f"pass --label-column with one of them"
            )
        return label_column
    return next((k for k in _LABEL_KEYS if k in keys), None)


def pick_text_column(
    path: Path, sample: dict[str, Any], text_column: str | None, label: str | None, where: str
) -> str:
    """The text field of ``sample`` (the first row); a fix names the likeliest one."""
    keys = list(sample)
    candidates = [k for k, v in sample.items() if isinstance(v, str) and k != label]
    # the likeliest text is the longest string in the first row
    guess = max(candidates, key=lambda k: len(sample[k]), default=None)
    fix = f"--text-column {guess}" if guess else "--text-column NAME"
    if text_column is not None:
        if text_column not in keys:
            raise DataFileError(
                f"{path} has no {where} {text_column!r} ({where}s: {', '.join(keys)}); pass {fix}"
            )
        return text_column
    for k in _TEXT_KEYS:
        if k in keys:
            return k
    if len(candidates) == 1:
        return candidates[0]
    why = "several could be" if candidates else "none holds a string"
    raise DataFileError(
        f"{path}: cannot tell which {where} holds the text ({why}; {where}s: "
        f"{', '.join(keys) or 'none'}); pass {fix}"
    )


def _read_jsonl(path: Path, text_column: str | None, label_column: str | None) -> UserData:
    rows: list[tuple[int, dict]] = []
    for lineno, line in enumerate(_read_utf8(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFileError(
                f"{path} line {lineno} is not valid JSON ({exc.msg} at column {exc.colno}); "
                "write one JSON object per line"
            ) from exc
        if not isinstance(obj, dict):
            raise DataFileError(
                f"{path} line {lineno} is a JSON {type(obj).__name__}, not an object; "
                'write one JSON object per line, e.g. {"text": "...", "label": 0}'
            )
        rows.append((lineno, obj))
    if not rows:
        return UserData("text", [], None, path)
    first_line, first = rows[0]
    label = _pick_label(path, list(first), label_column, "key")
    text = pick_text_column(path, first, text_column, label, "key")
    items: list[str] = []
    labels: list[str | int] | None = [] if label is not None else None
    for lineno, obj in rows:
        value = obj.get(text)
        if not isinstance(value, str):
            got = "has no key" if text not in obj else f"has a {type(value).__name__} under"
            raise DataFileError(
                f"{path} line {lineno} {got} {text!r} (the text key, from line {first_line}); "
                f"give every line a string {text!r}"
            )
        items.append(value)
        if labels is not None:
            lab = obj.get(label)
            if isinstance(lab, bool) or not isinstance(lab, (str, int)):
                got = "has no key" if label not in obj else f"has a {type(lab).__name__} under"
                raise DataFileError(
                    f"{path} line {lineno} {got} {label!r} (the label key); give every line "
                    "a string or integer label, or pass --label-column with another key"
                )
            labels.append(lab)
    return UserData("text", items, labels, path)


def _read_table(path: Path, text_column: str | None, label_column: str | None) -> UserData:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.reader(io.StringIO(_read_utf8(path), newline=""), delimiter=delimiter)
    rows: list[list[str]] = []
    try:
        header = next(reader, None)
        for row in reader:
            if not any(field.strip() for field in row):
                continue
            if header is not None and len(row) != len(header):
                raise DataFileError(
                    f"{path} line {reader.line_num} has {len(row)} fields but the header has "
                    f"{len(header)}; quote fields that contain {delimiter!r} or fix that line"
                )
            rows.append(row)
    except csv.Error as exc:
        raise DataFileError(
            f"{path} line {reader.line_num} is not valid {path.suffix.lower()[1:].upper()} "
            f"({_one_line(exc)}); fix that line"
        ) from exc
    if header is None or not rows:
        return UserData("text", [], None, path)
    header = [h.strip() for h in header]
    label = _pick_label(path, header, label_column, "column")
    text = pick_text_column(path, dict(zip(header, rows[0], strict=True)), text_column, label, "column")
    ti = header.index(text)
    items = [row[ti] for row in rows]
    labels: list[str | int] | None = None
    if label is not None:
        li = header.index(label)
        labels = [row[li] for row in rows]
    return UserData("text", items, labels, path)


def _read_images(root: Path) -> UserData:
    from PIL import Image

    files = sorted(
        (
            p
            for p in root.rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES
            and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(root).parts)
        ),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    if not files:
        raise DataFileError(
            f"data folder {root} has no images ({' '.join(IMAGE_SUFFIXES)}); pass a folder "
            f"of images, or a file ({' '.join(DATA_SUFFIXES)})"
        )
    for p in files:
        try:
            with Image.open(p) as im:
                im.load()
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... for bad files
            raise DataFileError(
                f"image {p} in data folder {root} does not decode ({_one_line(exc)}); "
                "remove or replace that file"
            ) from exc
    rel = [p.relative_to(root).parts for p in files]
    labels: list[str | int] | None = None
    if all(len(parts) > 1 for parts in rel):
        labels = [parts[0] for parts in rel]
    return UserData("images", list(files), labels, root)


def _as_inputs(path: Path, array: np.ndarray) -> torch.Tensor:
    if array.ndim == 0:
        raise DataFileError(
            f"{path} holds a 0-d array; save an array whose first dimension is the items, "
            "e.g. shape (N, features)"
        )
    try:
        return torch.from_numpy(array)
    except TypeError as exc:
        raise DataFileError(
            f"{path} holds dtype {array.dtype}, which torch cannot hold; save a numeric "
            "array, e.g. numpy.save(path, x.astype(numpy.float32))"
        ) from exc


def _read_npy(path: Path) -> UserData:
    try:
        with path.open("rb") as fh:
            magic = fh.read(6)
    except OSError as exc:
        raise DataFileError(
            f"{path} cannot be read ({exc.strerror or _one_line(exc)}); "
            "check its permissions or pass another --data file"
        ) from exc
    if magic != b"\x93NUMPY":  # np.load would try to unpickle anything else
        raise DataFileError(
            f"{path} is not a valid .npy file (no NumPy header); save it with numpy.save"
        )
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise DataFileError(
                f"{path} holds a pickled (object) array, which accelkit does not load "
                "(unpickling can run code); save a numeric array with numpy.save"
            ) from exc
        raise DataFileError(
            f"{path} is not a valid .npy file ({_one_line(exc)}); save it with numpy.save"
        ) from exc
    except (OSError, EOFError) as exc:
        raise DataFileError(
            f"{path} is not a valid .npy file ({_one_line(exc)}); save it with numpy.save"
        ) from exc
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return UserData("tensors", [], None, path, {"inputs": _as_inputs(path, array)})


def _read_safetensors(path: Path) -> UserData:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        loaded = load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataFileError(
            f"{path} is not a valid .safetensors file ({_one_line(exc)}); save it with "
            "safetensors.torch.save_file({'inputs': x, 'labels': y}, path)"
        ) from exc
    keys = sorted(loaded)
    if "inputs" in loaded:
        inputs = loaded["inputs"]
    elif len(loaded) == 1:
        inputs = loaded[keys[0]]
    else:
        raise DataFileError(
            f"{path} has tensors {', '.join(keys) or '(none)'} but none named 'inputs'; "
            "save the model inputs under the key 'inputs' (and optional 'labels')"
        )
    if inputs.dim() == 0:
        raise DataFileError(
            f"{path} holds a 0-d 'inputs' tensor; save a tensor whose first dimension is "
            "the items, e.g. shape (N, features)"
        )
    tensors = {"inputs": inputs}
    if "labels" in loaded and "inputs" in loaded:
        labels = loaded["labels"]
        if labels.dim() == 0 or labels.shape[0] != inputs.shape[0]:
            got = "a 0-d tensor" if labels.dim() == 0 else f"{labels.shape[0]} rows"
            raise DataFileError(
                f"{path} has {inputs.shape[0]} inputs but 'labels' has {got}; save one "
                "label per input row (labels shape (N,))"
            )
        tensors["labels"] = labels
    return UserData("tensors", [], None, path, tensors)


# --- text pairs (contrastive training) ----------------------------------------------------


def read_text_pairs(
    path: str | Path, *, anchor_column: str | None = None, positive_column: str | None = None
) -> UserData:
    """Read ``(anchor, positive)`` text pairs: kind "pairs", ``items`` are 2-tuples of strings.

    A .jsonl/.csv/.tsv file gives one pair per row from ``anchor_column``/``positive_column``
    (default: the first of ``PAIR_COLUMNS`` the file has). A .txt file is the documented
    fallback: consecutive lines pair up (lines 1+2, 3+4, ...); an odd last line is dropped.
    Every problem raises DataFileError with one line naming the file and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"data path {path} is not a file; pass a .jsonl/.csv of anchor,positive pairs or a "
                            ".txt whose consecutive lines pair up to --data")
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        if anchor_column is not None or positive_column is not None:
            raise DataFileError(f"{path} is a text file, which has no columns; drop --text-column/"
                                "--positive-column or pass a .jsonl/.csv")
        lines = _text_lines(path)
        pairs = [(lines[i], lines[i + 1]) for i in range(0, len(lines) - 1, 2)]
    elif suffix == ".jsonl":
        rows = []
        for lineno, line in enumerate(_read_utf8(path).split("\n"), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFileError(f"{path} line {lineno} is not valid JSON ({exc.msg} at column {exc.colno}); "
                                    "write one JSON object per line") from exc
            if not isinstance(obj, dict):
                raise DataFileError(f"{path} line {lineno} is a JSON {type(obj).__name__}, not an object; write "
                                    'one object per line, e.g. {"anchor": "...", "positive": "..."}')
            rows.append((lineno, obj))
        pairs = _pairs_from_rows(path, rows, anchor_column, positive_column, "key")
    elif suffix in (".csv", ".tsv"):
        reader = csv.reader(io.StringIO(_read_utf8(path), newline=""), delimiter="\t" if suffix == ".tsv" else ",")
        try:
            header = [h.strip() for h in next(reader, [])]
            rows = [(reader.line_num, dict(zip(header, row, strict=False))) for row in reader
                    if any(field.strip() for field in row)]
        except csv.Error as exc:
            raise DataFileError(f"{path} line {reader.line_num} is not valid {suffix[1:].upper()} "
                                f"({_one_line(exc)}); fix that line") from exc
        pairs = _pairs_from_rows(path, rows, anchor_column, positive_column, "column")
    else:
        got = suffix or "a file without suffix"
        raise DataFileError(f"{path}: text pairs are read from .jsonl, .csv, .tsv or .txt, not {got}; write "
                            "anchor,positive pairs to one of those")
    if len(pairs) < 2:
        raise DataFileError(f"{path} has {len(pairs)} text pair{'' if len(pairs) == 1 else 's'}; need at least 2 "
                            "(one trained on, one held out), so add more pairs")
    return UserData("pairs", pairs, None, path)


def _pairs_from_rows(path: Path, rows: list[tuple[int, dict]], anchor: str | None, positive: str | None,
                     where: str) -> list[tuple[str, str]]:
    if not rows:
        return []
    keys = list(rows[0][1])
    if anchor is None and positive is None:
        found = next(((a, p) for a, p in PAIR_COLUMNS if a in keys and p in keys), None)
        if found is None:
            raise DataFileError(f"{path} has no anchor/positive {where}s ({where}s: {', '.join(keys) or 'none'}); "
                                f"name them 'anchor' and 'positive', or pass --text-column ANCHOR "
                                "--positive-column POSITIVE")
        anchor, positive = found
    for name, option in ((anchor, "--text-column"), (positive, "--positive-column")):
        if name is None or name not in keys:
            raise DataFileError(f"{path} has no {where} {name!r} ({where}s: {', '.join(keys)}); pass {option} "
                                "with one of them (--text-column names the anchor, --positive-column its positive)")
    pairs = []
    for lineno, row in rows:
        a, p = row.get(anchor), row.get(positive)
        if not (isinstance(a, str) and isinstance(p, str) and a.strip() and p.strip()):
            raise DataFileError(f"{path} line {lineno}: {anchor!r} and {positive!r} must both be non-empty text; "
                                "fix or remove that line")
        pairs.append((a, p))
    return pairs
