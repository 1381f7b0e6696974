"""Cutting a corpus into blocks: every row of the input lands in exactly one block, whatever the
format and the block size; bad rows are reported with why, blank rows counted, columns checked."""

from __future__ import annotations

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from accelkit.batch_run.blocks import plan_blocks
from accelkit.errors import DataFileError


def _read_all(path, block_size, **columns):
    corpus, blocks = plan_blocks(path, block_size, **columns)
    ids, texts, blank, bad = [], [], 0, []
    for b in blocks:
        rows = corpus.read_block(b)
        assert len(rows.ids) + rows.blank + len(rows.bad) == b.rows
        ids += rows.ids
        texts += rows.texts
        blank += rows.blank
        bad += rows.bad
    assert [b.index for b in blocks] == list(range(len(blocks)))
    return corpus, blocks, ids, texts, blank, bad


@pytest.mark.parametrize("block_size", [1, 3, 4, 1000])
def test_text_lines_each_once_with_their_line_number(tmp_path, block_size):
    path = tmp_path / "in.txt"
    path.write_bytes(b"\xef\xbb\xbfalpha\n\nbeta  \r\ngam\xffma\ndelta\nNUL\x00here\nlast")
    _, blocks, ids, texts, blank, bad = _read_all(path, block_size)
    assert texts == ["alpha", "beta", "delta", "last"] and ids == [0, 2, 4, 6]
    assert blank == 1 and [b["row"] for b in bad] == [3, 5]
    assert "UTF-8" in bad[0]["why"] and "NUL" in bad[1]["why"]
    assert sum(b.rows for b in blocks) == 7


def test_jsonl_reports_each_kind_of_bad_line(tmp_path):
    path = tmp_path / "in.jsonl"
    lines = [json.dumps({"id": i, "text": f"t{i}"}) for i in range(5)]
    lines[1] = "{not json"
    lines[2] = "[1, 2]"
    lines[3] = json.dumps({"id": 3, "text": 7})
    path.write_text("\n".join([*lines, "", json.dumps({"text": "no id"})]) + "\n")
    corpus, _, ids, texts, blank, bad = _read_all(path, 2, id_column="id")
    assert corpus.text_column == "text"
    assert ids == ["0", "4"] and texts == ["t0", "t4"] and blank == 1
    whys = [b["why"] for b in bad]
    assert "not valid JSON" in whys[0] and "list" in whys[1] and "no string" in whys[2] and "no id" in whys[3]


def test_csv_quoted_newlines_never_split_a_row_across_blocks(tmp_path):
    path = tmp_path / "in.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["key", "body"])
        for i in range(9):
            w.writerow([f"k{i}", f"line one of {i}\nline two, with a comma"])
        fh.write("k9,too,many\n")
    for size in (1, 2, 4, 100):
        corpus, _, ids, texts, _, bad = _read_all(path, size, text_column="body", id_column="key")
        assert ids == [f"k{i}" for i in range(9)] and texts[3] == "line one of 3\nline two, with a comma"
        assert bad == [{"row": 9, "why": "3 fields, the header has 2"}]


def test_tsv_guesses_the_text_column_and_flags_undecodable_bytes(tmp_path):
    path = tmp_path / "in.tsv"
    path.write_bytes(b"n\tsentence\n1\tfirst\n2\tsec\xffond\n3\tthird\n")
    corpus, _, ids, texts, _, bad = _read_all(path, 2)
    assert corpus.text_column == "sentence" and texts == ["first", "third"] and ids == [0, 2]
    assert bad == [{"row": 1, "why": "not UTF-8"}]


def test_a_parquet_folder_numbers_rows_across_parts_and_row_groups(tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    pq.write_table(pa.table({"text": [f"a{i}" for i in range(7)]}), folder / "p0.parquet", row_group_size=3)
    pq.write_table(pa.table({"text": ["b0", None, "b2"]}), folder / "p1.parquet")
    (folder / "_SUCCESS").write_text("")
    _, blocks, ids, texts, _, bad = _read_all(folder, 2)
    assert texts == [f"a{i}" for i in range(7)] + ["b0", "b2"] and ids == [*range(7), 7, 9]
    assert bad == [{"row": 8, "why": "no string under 'text'"}]
    assert {b.row_group for b in blocks} == {0, 1, 2}


@pytest.mark.parametrize("name, content, columns, message", [
    ("in.xml", "<a/>", {}, "does not read"),
    ("in.txt", "a\n", {"text_column": "body"}, "no columns"),
    ("in.csv", "a,b\n1,2\n", {"text_column": "body"}, "no column 'body'"),
    ("in.csv", "a,text\n1,x\n", {"id_column": "key"}, "no column 'key'"),
    ("in.jsonl", '{"text": "x"}\n', {"id_column": "key"}, "no key 'key'"),
    ("in.jsonl", "[1]\n", {}, "no line holding a JSON object"),
])
def test_bad_inputs_are_refused_in_one_line(tmp_path, name, content, columns, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataFileError, match=message) as info:
        plan_blocks(path, 10, **columns)
    assert "\n" not in str(info.value)
    with pytest.raises(DataFileError, match="does not exist"):
        plan_blocks(tmp_path / "missing.txt", 10)
