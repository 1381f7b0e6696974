"""The output folder of a corpus run: one Parquet part per input block, written whole or not at
all and named by its block, so a part on disk is a finished block and a rerun of a block replaces
its part (never a second copy); the part's footer keeps the block's counts for ``--resume``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from accelkit._atomic import atomic_write_bytes
from accelkit.errors import OutputPathError
from accelkit.outdir import prepare_output_dir

__all__ = ["RUN_FILE", "SUMMARY_FILE", "part_name", "prepare_output", "write_part"]

# "_" and "." names are what pyarrow.dataset and Ray skip: the folder reads as one Parquet table
RUN_FILE = "_run.json"  # what the parts were made from, checked by --resume
SUMMARY_FILE = "_summary.json"
_PART = re.compile(r"part-(\d{6,})\.parquet")
_TEMP = re.compile(r"\.part-\d{6,}\.parquet\.tmp-.+")  # a write cut short (accelkit._atomic's name)
_STATS_KEY = b"accelkit.block"


def part_name(index: int) -> str:
    return f"part-{index:06d}.parquet"


def _owned(root: Path) -> set[str]:
    """The files of ``root`` a run writes (parts, their temp files, the run and summary files)."""
    names = {p.name for p in root.iterdir()} if root.is_dir() else set()
    return {n for n in names if _PART.fullmatch(n) or _TEMP.fullmatch(n)} | {RUN_FILE, SUMMARY_FILE}


def prepare_output(root: Path, run: dict[str, Any], *, resume: bool, overwrite: bool) -> dict[int, dict]:
    """Make ``root`` ready for the run described by ``run``; returns the finished blocks' counts
    (``resume``), by block. Refuses a folder holding other files (unless ``overwrite``: they stay),
    and parts of an earlier run unless ``resume`` (same input, model and blocks) or ``overwrite``."""
    prepare_output_dir(root, overwrite=overwrite, owned=_owned(root))
    for name in _owned(root):
        if _TEMP.fullmatch(name):
            (root / name).unlink(missing_ok=True)
    parts = sorted(n for n in _owned(root) if _PART.fullmatch(n) and (root / n).is_file())
    done: dict[int, dict] = {}
    if resume and parts:
        try:
            earlier = json.loads((root / RUN_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            earlier = None
        if earlier != run:
            raise OutputPathError(f"{root} holds parts of a run with another input, model or block size "
                                  f"(or --max-new-tokens or --seed; see {RUN_FILE}); resume with the same ones, or pass --overwrite to start over")
        for name in parts:
            stats = _part_stats(root / name)
            if stats is None:  # unreadable: ours, so it is dropped and its block run again
                (root / name).unlink()
            else:
                done[int(stats["block"])] = stats
    elif parts:
        if not overwrite:
            raise OutputPathError(f"{root} holds parts of an earlier run; pass --resume to finish it, or "
                                  "--overwrite to start over")
        for name in [*parts, RUN_FILE, SUMMARY_FILE]:
            (root / name).unlink(missing_ok=True)
    atomic_write_bytes(root / RUN_FILE, json.dumps(run, indent=1).encode())
    return done


def _part_stats(path: Path) -> dict | None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
        return json.loads(meta[_STATS_KEY])
    except (pa.ArrowException, OSError, KeyError, json.JSONDecodeError):
        return None


def write_part(root: Path, index: int, table: Any, stats: dict[str, Any]) -> Path:
    """Write block ``index``'s rows as its part, the block's counts in the footer, atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata({_STATS_KEY: json.dumps(stats).encode()}), sink)
    return atomic_write_bytes(root / part_name(index), sink.getvalue().to_pybytes())
