"""The image folder workload: rendering, decode + augment parity, bad-file policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from accelkit.data.images import (
    CorruptImageError,
    ImageFolderDataset,
    ImagePipelineConfig,
    augment_batch,
    render_digits_folder,
)
from accelkit.errors import ConfigError


def test_render_writes_real_png_and_jpeg_with_sklearn_labels(digits_root_master: Path) -> None:
    from PIL import Image
    from sklearn.datasets import load_digits

    files = sorted(digits_root_master.glob("*/*.*"))
    assert len(files) == 40
    assert {f.suffix for f in files} == {".png", ".jpg"}
    target = load_digits().target
    for f in files:
        assert int(f.parent.name) == target[int(f.stem)]
        with Image.open(f) as im:
            assert im.format == ("PNG" if f.suffix == ".png" else "JPEG")
            assert im.size == (32, 32)


def test_render_reuses_complete_folder_and_refuses_other_params(digits_root_master: Path) -> None:
    before = {f: f.stat().st_mtime_ns for f in digits_root_master.glob("*/*.*")}
    assert render_digits_folder(digits_root_master, image_size=32, limit=40) == digits_root_master
    assert {f: f.stat().st_mtime_ns for f in digits_root_master.glob("*/*.*")} == before
    with pytest.raises(ConfigError, match="rendered with"):
        render_digits_folder(digits_root_master, image_size=48, limit=40)


def test_items_have_shape_label_and_epoch_keyed_randomness(digits_root: Path, small_config) -> None:
    ds = ImageFolderDataset(digits_root, small_config)
    x, y = ds[3]
    assert x.shape == (3, 20, 20) and x.dtype == torch.float32
    assert y == ds.samples[3][1]
    assert torch.equal(ds[3][0], x)  # same (seed, epoch, index) → same augmentation
    ds.set_epoch(1)
    assert not torch.equal(ds[3][0], x)  # a new epoch draws new augmentation


def test_batched_augment_equals_per_sample(digits_root: Path, small_config) -> None:
    ds = ImageFolderDataset(digits_root, small_config)
    base = torch.from_numpy(np.stack([ds.load_base(i)[0] for i in range(8)]))
    idx = np.arange(8)
    batched = augment_batch(base, idx, 5, small_config)
    single = torch.cat(
        [augment_batch(base[i : i + 1], idx[i : i + 1], 5, small_config) for i in range(8)]
    )
    assert torch.equal(batched, single)


def test_identity_augment_returns_normalized_decode(digits_root: Path) -> None:
    from PIL import Image

    cfg = ImagePipelineConfig(
        resize=32, crop=32, hflip_p=0.0, max_rotation_deg=0.0, mean=(0.5,), std=(0.25,)
    )
    ds = ImageFolderDataset(digits_root, cfg)
    x, _ = ds[0]
    with Image.open(ds.samples[0][0]) as im:
        ref = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(x, (ref - 0.5) / 0.25)


def test_crop_flip_without_rotation_is_exact_slicing(digits_root: Path) -> None:
    cfg = ImagePipelineConfig(resize=24, crop=16, hflip_p=1.0, max_rotation_deg=0.0)
    base = (
        torch.arange(2 * 3 * 24 * 24, dtype=torch.int64)
        .remainder(251)
        .to(torch.uint8)
        .view(2, 3, 24, 24)
    )
    out = augment_batch(base, np.array([0, 1]), 0, cfg)
    rotated_path_cfg = ImagePipelineConfig(resize=24, crop=16, hflip_p=1.0, max_rotation_deg=1e-9)
    resampled = augment_batch(base, np.array([0, 1]), 0, rotated_path_cfg)
    assert torch.equal(out, resampled)  # slicing fast path == the resampling path at angle ~0
    # every output row is a reversed contiguous run of an input row
    assert out.shape == (2, 3, 16, 16)


def test_corrupt_file_raise_policy_names_the_file(digits_root: Path, small_config) -> None:
    ds = ImageFolderDataset(digits_root, small_config)
    bad = ds.samples[2][0]
    bad.write_bytes(bad.read_bytes()[:40])  # truncated
    with pytest.raises(CorruptImageError, match=str(bad)):
        ds[2]


def test_corrupt_file_skip_policy_warns_and_never_mislabels(digits_root: Path) -> None:
    cfg = ImagePipelineConfig(resize=24, crop=20, on_error="skip")
    ds = ImageFolderDataset(digits_root, cfg)
    bad = ds.samples[2][0]
    bad.write_bytes(b"not an image at all")
    with pytest.warns(UserWarning, match=str(bad)):
        x, y = ds[2]
    # The substitute is sample 3, served with sample 3's own label and pixels.
    assert y == ds.samples[3][1]
    base3, label3 = ds.load_base(3)
    assert label3 == y
    assert str(bad) in ds.bad_files


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(crop=80),
        dict(hflip_p=1.5),
        dict(mode="CMYK"),
        dict(on_error="ignore"),
        dict(std=(0.0,)),
        dict(mean=(0.1, 0.2)),
    ],
)
def test_config_rejects_bad_values(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        ImagePipelineConfig(**kwargs)


def test_config_round_trips() -> None:
    cfg = ImagePipelineConfig(resize=40, crop=32, seed=3)
    assert ImagePipelineConfig.from_dict(cfg.to_dict()) == cfg


def test_empty_root_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no class sub-folders"):
        ImageFolderDataset(tmp_path)
