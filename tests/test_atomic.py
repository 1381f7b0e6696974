"""atomic_write_bytes: the file is whole or absent, and no temp file outlives an interrupted write."""

from __future__ import annotations

import os

import pytest

from accelkit import _atomic
from accelkit._atomic import atomic_write_bytes


def test_write_replaces_the_file_whole_with_the_umask_mode(tmp_path):
    target = tmp_path / "sub" / "part.bin"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["part.bin"]


def test_an_interrupt_right_after_the_open_leaves_no_temp_file(tmp_path, monkeypatch):
    # a SIGTERM handler raising between the temp file's creation and the caller learning its name
    # (inside mkstemp, once) left a ".part-….tmp-…" behind in a killed corpus run
    real_open = os.open

    def open_then_interrupted(*args, **kwargs):
        real_open(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(_atomic.os, "open", open_then_interrupted)
    target = tmp_path / "part.bin"
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"data")
    assert list(tmp_path.iterdir()) == []


def test_an_interrupt_before_the_rename_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "part.bin"
    atomic_write_bytes(target, b"old")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_atomic.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["part.bin"]
