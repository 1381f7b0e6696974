"""accelkit cache build|info|clear and tune-loader on a small rendered folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from accelkit.cli import main


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, digits_root_master: Path) -> Path:
    # Point the embedded workload at the small session folder instead of rendering 1797 images.
    import accelkit.data.images as images

    monkeypatch.setenv("ACCELKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(images, "render_digits_folder", lambda root=None, **kw: digits_root_master)
    return tmp_path


def _run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exc:
        main(argv)
        raise SystemExit(0)
    return exc.value.code


def test_cache_build_info_clear(env: Path, capsys: pytest.CaptureFixture) -> None:
    assert _run(["cache", "build", "--workload", "images", "--precompute-epochs", "1"]) == 0
    assert "ready: 40 samples" in capsys.readouterr().out
    assert _run(["cache", "info", "--json", "--verify"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1 and rows[0]["valid"] and rows[0]["precompute_epochs"] == 1
    assert rows[0]["augment"]["seed"] == 0
    assert _run(["cache", "clear"]) == 0
    assert "removed 1 cache entry" in capsys.readouterr().out
    assert _run(["cache", "info"]) == 0
    assert "no cache entries" in capsys.readouterr().out


def test_cache_errors_exit_2_with_one_line(env: Path, capsys: pytest.CaptureFixture) -> None:
    assert _run(["cache", "build", "--workload", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert _run(["cache", "build", "--max-mb", "0.01"]) == 2
    assert "max_bytes" in capsys.readouterr().err
    assert _run(["cache", "clear", "--name", "missing"]) == 2


def test_tune_loader_cli_prints_best_and_caches(env: Path, capsys: pytest.CaptureFixture) -> None:
    argv = [
        "tune-loader",
        "--workload",
        "images",
        "--workers",
        "0",
        "--batch-size",
        "8",
        "--batches-per-trial",
        "2",
        "--json",
    ]
    assert _run(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["best_kwargs"]["num_workers"] == 0 and not first["from_cache"]
    assert _run(argv) == 0
    assert json.loads(capsys.readouterr().out)["from_cache"]
    assert _run(["tune-loader", "--workers", "a,b"]) == 2
