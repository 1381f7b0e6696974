"""The output folder of a run: parts are whole or absent, a folder with other files or another
run's parts is refused, --overwrite keeps the user's files, --resume keeps only matching parts."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from accelkit.batch_run.parts import RUN_FILE, part_name, prepare_output, write_part
from accelkit.errors import OutputPathError

RUN = {"schema": "accelkit.run/1", "input": "in.txt", "blocks": 3}


def _stats(index):
    return {"block": index, "rows": 2, "items": 2, "blank_rows": 0, "bad_rows": 0, "bad_row_examples": []}


def _part(root, index):
    write_part(root, index, pa.table({"id": [2 * index, 2 * index + 1]}), _stats(index))


def test_a_part_holds_its_rows_and_its_block_counts(tmp_path):
    _part(tmp_path, 4)
    assert [p.name for p in tmp_path.iterdir()] == [part_name(4)] == ["part-000004.parquet"]
    assert pq.read_table(tmp_path).column("id").to_pylist() == [8, 9]


def test_resume_returns_finished_blocks_and_drops_cut_writes(tmp_path):
    prepare_output(tmp_path, RUN, resume=False, overwrite=False)
    _part(tmp_path, 0)
    _part(tmp_path, 2)
    (tmp_path / ".part-000001.parquet.tmp-abc").write_bytes(b"half")
    (tmp_path / part_name(5)).write_bytes(b"not parquet")
    done = prepare_output(tmp_path, RUN, resume=True, overwrite=False)
    assert sorted(done) == [0, 2] and done[2] == _stats(2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [RUN_FILE, part_name(0), part_name(2)]


def test_resume_refuses_parts_of_another_run(tmp_path):
    prepare_output(tmp_path, RUN, resume=False, overwrite=False)
    _part(tmp_path, 0)
    with pytest.raises(OutputPathError, match="another input, model or block size"):
        prepare_output(tmp_path, {**RUN, "blocks": 4}, resume=True, overwrite=False)


def test_earlier_parts_need_resume_or_overwrite(tmp_path):
    prepare_output(tmp_path, RUN, resume=False, overwrite=False)
    _part(tmp_path, 0)
    with pytest.raises(OutputPathError, match="--resume to finish it"):
        prepare_output(tmp_path, RUN, resume=False, overwrite=False)
    assert prepare_output(tmp_path, RUN, resume=False, overwrite=True) == {}
    assert not (tmp_path / part_name(0)).exists()


def test_other_files_are_refused_and_kept_with_overwrite(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputPathError, match="notes.txt"):
        prepare_output(tmp_path, RUN, resume=False, overwrite=False)
    _part(tmp_path, 0)
    prepare_output(tmp_path, RUN, resume=False, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine" and not (tmp_path / part_name(0)).exists()
