"""Caches that are corrupt, foreign or read-only: one clear line, and shared caches stay readable."""

from __future__ import annotations

import builtins
import errno
import os

import pytest
import torch

from accelkit.cli import main
from accelkit.data.cache import CacheConfig, CachedDataset, cache_info
from accelkit.errors import OutputPathError
from accelkit.workloads._weights import cached_trained


def _code(args):
    try:
        main(args)
    except SystemExit as exc:
        return exc.code or 0
    return 0


def _build_entry(cache_dir):
    ds = torch.utils.data.TensorDataset(torch.randn(8, 3), torch.arange(8))
    CachedDataset(ds, CacheConfig(cache_dir=str(cache_dir), store="disk", key="hostile"))[0]
    return next(p for p in cache_dir.iterdir() if p.is_dir())


@pytest.fixture
def read_only(monkeypatch):
    """Make every delete, and every write under ``root``, fail as on a read-only folder (tests
    run as root here, where chmod would not stop anything)."""

    def make(root):
        root = str(root)

        def denied(*a, **k):
            raise PermissionError(errno.EACCES, "Permission denied")

        real_open = builtins.open

        def guarded_open(file, mode="r", *a, **k):
            if isinstance(file, (str, os.PathLike)) and os.fspath(file).startswith(root) and set(mode) & set("wa+x"):
                denied()
            return real_open(file, mode, *a, **k)

        for name in ("unlink", "remove", "rmdir"):
            monkeypatch.setattr(os, name, denied)
        monkeypatch.setattr(builtins, "open", guarded_open)

    return make


def test_cache_meta_json_that_is_a_list_is_reported_invalid(tmp_path, capsys):
    entry = _build_entry(tmp_path / "c")
    (entry / "meta.json").write_text("[]")
    rows = cache_info(tmp_path / "c")
    assert rows[0]["valid"] is False
    assert _code(["cache", "info", "--cache-dir", str(tmp_path / "c")]) == 0


def test_cache_clear_on_a_read_only_folder_is_one_line(tmp_path, read_only, capsys):
    _build_entry(tmp_path / "c")
    read_only(tmp_path / "c")
    assert _code(["cache", "clear", "--cache-dir", str(tmp_path / "c")]) == 2
    assert "not writable for you" in capsys.readouterr().err


def test_corrupt_weights_in_a_read_only_cache_is_one_line(tmp_path, monkeypatch, read_only):
    monkeypatch.setenv("ACCELKIT_CACHE", str(tmp_path))
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "tiny.safetensors").write_bytes(b"\x00garbage")
    trained = []
    read_only(tmp_path)
    with pytest.raises(OutputPathError, match="cannot be removed .*ACCELKIT_CACHE"):
        cached_trained("tiny", lambda: torch.nn.Linear(2, 2), trained.append)
    assert not trained  # said before spending the training time


def test_cache_entries_get_the_umask_not_0700(tmp_path):
    old = os.umask(0o022)
    try:
        entry = _build_entry(tmp_path / "c")
    finally:
        os.umask(old)
    assert entry.stat().st_mode & 0o777 == 0o755
