"""A corpus cut into numbered blocks without reading it whole: one streaming pass finds each
block's byte range (.txt, .jsonl, .csv/.tsv) or row-group slice (Parquet); any process then reads
one block alone into its items, blank rows and bad rows (each bad row with why)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from accelkit.data.user_files import pick_text_column
from accelkit.errors import DataFileError

__all__ = ["INPUT_SUFFIXES", "Block", "BlockRows", "Corpus", "plan_blocks"]

_TEXT_SUFFIXES = (".txt", ".text")
INPUT_SUFFIXES = (*_TEXT_SUFFIXES, ".jsonl", ".csv", ".tsv", ".parquet")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Block:
    """One numbered slice of the input: ``rows`` rows from ``start`` (a byte offset in a line
    format; a row inside ``row_group`` in Parquet); ``first_row`` numbers its first row."""

    index: int
    file: str
    start: int
    rows: int
    first_row: int
    row_group: int = -1


@dataclass
class BlockRows:
    """A block as read: its items (ids and texts), its blank rows, and its bad rows."""

    ids: list[Any]
    texts: list[str]
    blank: int
    bad: list[dict[str, Any]]  # {"row": row number, "why": one line}


@dataclass
class Corpus:
    """How the input's rows are read: its format and the columns holding the text and the id
    (None: the row number is the id). Small enough to send to every worker."""

    path: str
    fmt: str  # "text" | "jsonl" | "csv" | "parquet"
    text_column: str | None = None
    id_column: str | None = None
    delimiter: str = ","
    header: list[str] = field(default_factory=list)
    _row_group: tuple[Any, Any] | None = field(default=None, init=False, repr=False, compare=False)

    def read_block(self, block: Block) -> BlockRows:
        """The block's rows sorted into items, blank rows and bad rows, in input order."""
        out = BlockRows([], [], 0, [])
        if self.fmt == "parquet":
            rows: Iterator[tuple[int, Any]] = self._parquet_rows(block)
        elif self.fmt == "csv":
            rows = self._csv_rows(block)
        else:
            rows = self._line_rows(block)
        for row, parsed in rows:
            if parsed is None:
                out.blank += 1
            elif isinstance(parsed, str):
                out.bad.append({"row": row, "why": parsed})
            else:
                out.ids.append(parsed[0] if self.id_column else row)
                out.texts.append(parsed[1])
        return out

    def _line_rows(self, block: Block) -> Iterator[tuple[int, Any]]:
        with open(block.file, "rb") as fh:
            fh.seek(block.start)
            for i in range(block.rows):
                raw = fh.readline()
                if i == 0 and block.start == 0:
                    raw = raw.removeprefix(_BOM)
                row = block.first_row + i
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield row, f"not UTF-8 (byte {exc.start})"
                    continue
                yield row, (self._text_line(line) if self.fmt == "text" else self._json_line(line))

    @staticmethod
    def _text_line(line: str) -> Any:
        text = line.rstrip()
        if "\x00" in text:
            return "contains a NUL byte"
        return (None, text) if text else None

    def _json_line(self, line: str) -> Any:
        if not line.strip():
            return None
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            return f"not valid JSON ({exc.msg} at column {exc.colno})"
        if not isinstance(obj, dict):
            return f"a JSON {type(obj).__name__}, not an object"
        return self._fields(obj.get(self.text_column), obj.get(self.id_column) if self.id_column else None)

    def _fields(self, text: Any, ident: Any) -> Any:
        if not isinstance(text, str):
            return f"no string under {self.text_column!r}"
        if self.id_column and (ident is None or ident == ""):
            return f"no id under {self.id_column!r}"
        return (str(ident) if self.id_column else None, text)

    def _csv_rows(self, block: Block) -> Iterator[tuple[int, Any]]:
        ti = self.header.index(self.text_column)
        ii = self.header.index(self.id_column) if self.id_column else None
        with open(block.file, "rb") as fh:
            fh.seek(block.start)
            reader = csv.reader(_DecodedLines(fh), delimiter=self.delimiter)
            for i in range(block.rows):
                row = block.first_row + i
                try:
                    fields = next(reader)
                except csv.Error as exc:
                    yield row, f"not valid CSV ({' '.join(str(exc).split())})"
                    continue
                except StopIteration:  # the file shrank since it was cut into blocks
                    raise DataFileError(f"{block.file} ended inside block {block.index}; the input changed "
                                        "while it was read, run again without --resume") from None
                if not any(f.strip() for f in fields):
                    yield row, None
                elif len(fields) != len(self.header):
                    yield row, f"{len(fields)} fields, the header has {len(self.header)}"
                elif not _is_utf8(fields[ti]):
                    yield row, "not UTF-8"
                else:
                    yield row, self._fields(fields[ti], fields[ii] if ii is not None else None)

    def _parquet_rows(self, block: Block) -> Iterator[tuple[int, Any]]:
        import pyarrow.parquet as pq

        key = (block.file, block.row_group)
        if self._row_group is None or self._row_group[0] != key:
            # consecutive blocks of a worker mostly share a row group: read it once
            columns = [c for c in (self.text_column, self.id_column) if c]
            self._row_group = (key, pq.ParquetFile(block.file).read_row_group(block.row_group, columns=columns))
        part = self._row_group[1].slice(block.start, block.rows)
        texts = part.column(self.text_column).to_pylist()
        ids = part.column(self.id_column).to_pylist() if self.id_column else [None] * len(texts)
        for i, (text, ident) in enumerate(zip(texts, ids, strict=True)):
            yield block.first_row + i, self._fields(text, ident)


class _DecodedLines:
    """A binary file's lines as text for ``csv.reader``; undecodable bytes become surrogates, so
    one bad row is reported as bad instead of stopping the read. ``offset``: bytes consumed, which
    csv.reader leaves at the end of the record it returned (it pulls lines one at a time)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.offset = fh.tell()

    def __iter__(self) -> _DecodedLines:
        return self

    def __next__(self) -> str:
        line = self.fh.readline()
        if not line:
            raise StopIteration
        first = self.offset == 0
        self.offset += len(line)
        text = line.decode("utf-8", "surrogateescape")
        return text.removeprefix("\ufeff") if first else text


def _is_utf8(text: str) -> bool:
    """False for text holding the surrogates that stand for undecodable bytes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def plan_blocks(path: str | Path, block_size: int, *, text_column: str | None = None,
                id_column: str | None = None) -> tuple[Corpus, list[Block]]:
    """The input's format and columns, and its blocks of at most ``block_size`` rows, found in
    one streaming pass (the file is never held whole). DataFileError for a missing input, an
    unknown format, or a column the input does not have."""
    src = Path(path).resolve()
    if not src.exists():
        raise DataFileError(f"input {path} does not exist; pass a .txt, .jsonl, .csv, .tsv or Parquet file "
                            "(or a folder of Parquet parts) to --input")
    suffix = ".parquet" if src.is_dir() else src.suffix.lower()
    if suffix not in INPUT_SUFFIXES:
        got = f"suffix {suffix!r}" if suffix else "no suffix"
        raise DataFileError(f"{path} has {got}, which accelkit run does not read; accepted: "
                            f"{' '.join(INPUT_SUFFIXES)}, or a folder of .parquet parts")
    if suffix in _TEXT_SUFFIXES:
        if text_column or id_column:
            raise DataFileError(f"{path} is a text file with one item a line and no columns; drop "
                                "--text-column/--id-column (the line number is the id)")
        corpus = Corpus(str(src), "text")
        return corpus, _line_blocks(src, block_size)
    if suffix == ".jsonl":
        corpus = Corpus(str(src), "jsonl", *_jsonl_columns(src, text_column, id_column))
        return corpus, _line_blocks(src, block_size)
    if suffix in (".csv", ".tsv"):
        return _csv_plan(src, "\t" if suffix == ".tsv" else ",", block_size, text_column, id_column)
    return _parquet_plan(src, block_size, text_column, id_column)


def _cut(file: Path, offsets: list[int], rows: int, block_size: int) -> list[Block]:
    """Blocks from the byte offset where each one starts (``rows`` rows in all)."""
    return [Block(i, str(file), start, min(block_size, rows - i * block_size), i * block_size)
            for i, start in enumerate(offsets) if i * block_size < rows]


def _line_blocks(src: Path, block_size: int) -> list[Block]:
    offsets, pos, rows = [0], 0, 0
    with open(src, "rb") as fh:
        for line in fh:
            pos += len(line)
            rows += 1
            if rows % block_size == 0:
                offsets.append(pos)
    return _cut(src, offsets, rows, block_size)


def _check_column(src: Path, name: str | None, columns: list[str], what: str, where: str) -> None:
    if name is not None and name not in columns:
        raise DataFileError(f"{src} has no {where} {name!r} ({where}s: {', '.join(columns) or 'none'}); "
                            f"pass {what} with one of them")


def _jsonl_columns(src: Path, text_column: str | None, id_column: str | None) -> tuple[str, str | None]:
    """The text and id keys, picked from the first line that is a JSON object."""
    with open(src, "rb") as fh:
        for raw in fh:
            try:
                first = json.loads(raw.removeprefix(_BOM))
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(first, dict):
                _check_column(src, id_column, list(first), "--id-column", "key")
                return pick_text_column(src, first, text_column, id_column, "key"), id_column
    raise DataFileError(f"{src} has no line holding a JSON object; write one object per line, "
                        'e.g. {"id": 1, "text": "..."}')


def _csv_plan(src: Path, delimiter: str, block_size: int, text_column: str | None,
              id_column: str | None) -> tuple[Corpus, list[Block]]:
    with open(src, "rb") as fh:
        lines = _DecodedLines(fh)
        reader = csv.reader(lines, delimiter=delimiter)
        try:
            header = [h.strip() for h in next(reader, [])]
        except csv.Error as exc:
            raise DataFileError(f"{src}: the header line is not valid CSV ({exc}); fix it") from exc
        if not header:
            raise DataFileError(f"{src} has no header line; put the column names on the first line")
        offsets, rows, sample = [lines.offset], 0, None
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error:
                fields = []  # a bad row: counted here, reported when its block is read
            rows += 1
            if sample is None and len(fields) == len(header):
                sample = dict(zip(header, fields, strict=True))
            if rows % block_size == 0:
                offsets.append(lines.offset)
    _check_column(src, id_column, header, "--id-column", "column")
    text = pick_text_column(src, sample or dict.fromkeys(header, ""), text_column, id_column, "column")
    return Corpus(str(src), "csv", text, id_column, delimiter, header), _cut(src, offsets, rows, block_size)


def _parquet_plan(src: Path, block_size: int, text_column: str | None,
                  id_column: str | None) -> tuple[Corpus, list[Block]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if src.is_dir():
        # what pyarrow.dataset reads of a folder: files not under a hidden or "_" name
        files = sorted((p for p in src.rglob("*.parquet") if p.is_file() and not any(
            part.startswith((".", "_")) for part in p.relative_to(src).parts)),
            key=lambda p: p.relative_to(src).as_posix())
        if not files:
            raise DataFileError(f"input folder {src} holds no .parquet files; pass a folder of Parquet parts")
    else:
        files = [src]
    blocks: list[Block] = []
    chosen: str | None = None
    row = 0
    for f in files:
        try:
            pf = pq.ParquetFile(f)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataFileError(f"{f} is not a readable Parquet file ({' '.join(str(exc).split())}); "
                                "replace it or remove it from the input") from exc
        schema = pf.schema_arrow
        if chosen is None:
            _check_column(f, id_column, schema.names, "--id-column", "column")
            # a sample row for the text column's choice: strings where the column holds strings
            sample = {n: "" if pa.types.is_string(t) or pa.types.is_large_string(t) else 0
                      for n, t in zip(schema.names, schema.types, strict=True)}
            chosen = pick_text_column(f, sample, text_column, id_column, "column")
        for name in (chosen, id_column):
            _check_column(f, name, schema.names, "--text-column/--id-column", "column")
        for rg in range(pf.metadata.num_row_groups):
            n = pf.metadata.row_group(rg).num_rows
            for start in range(0, n, block_size):
                blocks.append(Block(len(blocks), str(f), start, min(block_size, n - start), row, rg))
                row += min(block_size, n - start)
    return Corpus(str(src), "parquet", chosen, id_column), blocks
