"""Small rendered image folders shared by the data tests (rendered once per session)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from accelkit.data.images import ImagePipelineConfig, render_digits_folder


@pytest.fixture(scope="session")
def digits_root_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_digits_folder(
        tmp_path_factory.mktemp("render") / "digits", image_size=32, limit=40
    )


@pytest.fixture
def digits_root(digits_root_master: Path, tmp_path: Path) -> Path:
    """A private copy the test may damage."""
    dst = tmp_path / "digits"
    shutil.copytree(digits_root_master, dst)
    return dst


@pytest.fixture
def small_config() -> ImagePipelineConfig:
    return ImagePipelineConfig(resize=24, crop=20, max_rotation_deg=20.0, seed=7)
