"""CachedDataset: parity with the uncached pipeline, staleness, corruption, locks, limits."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from accelkit.data.cache import CacheConfig, CachedDataset, cache_info, clear_cache
from accelkit.data.images import ImageFolderDataset, ImagePipelineConfig
from accelkit.errors import ConfigError, OutputPathError


def _entry_files(cache_dir: Path) -> list[Path]:
    return [p for p in cache_dir.iterdir() if p.is_dir()]


@pytest.mark.parametrize("store", ["ram", "disk"])
def test_cached_reads_equal_uncached_reads_across_epochs(
    digits_root, small_config, tmp_path, store
) -> None:
    ds = ImageFolderDataset(digits_root, small_config)
    cached = CachedDataset(ds, CacheConfig(store=store, cache_dir=str(tmp_path / "c")))
    for epoch in (0, 3):
        cached.set_epoch(epoch)
        for i in (0, 7, 39):
            xc, yc = cached[i]
            xd, yd = ds[i]
            assert yc == yd
            assert torch.equal(xc, xd)
        batch = cached.__getitems__([39, 0, 7])
        assert [y for _, y in batch] == [ds[i][1] for i in (39, 0, 7)]
        assert all(torch.equal(x, ds[i][0]) for (x, _), i in zip(batch, (39, 0, 7), strict=True))


def test_precomputed_epochs_equal_on_the_fly_and_record_seed(
    digits_root, small_config, tmp_path
) -> None:
    ds = ImageFolderDataset(digits_root, small_config)
    cached = CachedDataset(ds, CacheConfig(cache_dir=str(tmp_path / "c"), precompute_epochs=2))
    assert cached.meta["augment"]["seed"] == 7 and cached.meta["precompute_epochs"] == 2
    for epoch in (0, 1):
        cached.set_epoch(epoch)
        for i in (0, 11):
            assert torch.equal(cached[i][0], ds[i][0])
    cached.set_epoch(2)  # past K: cycles back to slot 0
    ds.set_epoch(0)
    assert torch.equal(cached[5][0], ds[5][0])
    # a different seed is a different entry, never the stale one
    other = ImageFolderDataset(
        digits_root, ImagePipelineConfig(resize=24, crop=20, max_rotation_deg=20.0, seed=8)
    )
    assert (
        CachedDataset(
            other, CacheConfig(cache_dir=str(tmp_path / "c"), precompute_epochs=2)
        ).fingerprint
        != cached.fingerprint
    )


def test_changed_source_file_is_never_served_stale(digits_root, small_config, tmp_path) -> None:
    from PIL import Image

    cfg = CacheConfig(cache_dir=str(tmp_path / "c"))
    first = CachedDataset(ImageFolderDataset(digits_root, small_config), cfg)
    path = ImageFolderDataset(digits_root, small_config).samples[4][0]
    Image.new("RGB", (32, 32), (255, 0, 0)).save(path)
    ds = ImageFolderDataset(digits_root, small_config)
    second = CachedDataset(ds, cfg)
    assert second.fingerprint != first.fingerprint
    assert torch.equal(second[4][0], ds[4][0])


def test_changed_transform_gets_its_own_entry(digits_root, tmp_path) -> None:
    cfg = CacheConfig(cache_dir=str(tmp_path / "c"))
    a = CachedDataset(ImageFolderDataset(digits_root, ImagePipelineConfig(resize=24, crop=20)), cfg)
    b = CachedDataset(ImageFolderDataset(digits_root, ImagePipelineConfig(resize=28, crop=20)), cfg)
    assert a.fingerprint != b.fingerprint
    assert b.arrays["base"].shape[-1] == 28


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "drop_meta", "other_version"])
def test_damaged_cache_is_detected_and_rebuilt(digits_root, small_config, tmp_path, damage) -> None:
    ds = ImageFolderDataset(digits_root, small_config)
    cfg = CacheConfig(cache_dir=str(tmp_path / "c"))
    entry = CachedDataset(ds, cfg).entry
    data = entry / "base.npy"
    if damage == "flip_byte":
        raw = bytearray(data.read_bytes())
        raw[-100] ^= 0xFF
        data.write_bytes(bytes(raw))
    elif damage == "truncate":
        data.write_bytes(data.read_bytes()[:-500])
    elif damage == "drop_meta":
        (entry / "meta.json").unlink()
    else:
        meta = json.loads((entry / "meta.json").read_text())
        meta["version"] = -1
        (entry / "meta.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="rebuilding"):
        rebuilt = CachedDataset(ds, cfg)
    assert rebuilt.rebuilt_reason
    assert all(torch.equal(rebuilt[i][0], ds[i][0]) for i in range(0, 40, 9))
    assert cache_info(tmp_path / "c", verify="full")[0]["valid"]


def test_entry_over_size_limit_is_refused_before_work(digits_root, small_config, tmp_path) -> None:
    with pytest.raises(ConfigError, match="max_bytes"):
        CachedDataset(
            ImageFolderDataset(digits_root, small_config),
            CacheConfig(cache_dir=str(tmp_path / "c"), max_bytes=1000),
        )
    assert not (tmp_path / "c").exists() or not _entry_files(tmp_path / "c")


def test_size_limit_evicts_least_recently_used(digits_root, tmp_path) -> None:
    one_entry = 40 * 3 * 24 * 24 + 40 * 8 + 4096  # base + labels + headers/meta
    cfg = CacheConfig(cache_dir=str(tmp_path / "c"), max_bytes=int(one_entry * 1.5))
    a = CachedDataset(ImageFolderDataset(digits_root, ImagePipelineConfig(resize=24, crop=20)), cfg)
    b = CachedDataset(
        ImageFolderDataset(
            digits_root, ImagePipelineConfig(resize=24, crop=20, mode="RGB", on_error="skip")
        ),
        cfg,
    )
    names = {p.name for p in _entry_files(tmp_path / "c")}
    assert b.entry.name in names and a.entry.name not in names
    assert sum(r["bytes"] for r in cache_info(tmp_path / "c")) <= cfg.max_bytes


def test_unwritable_cache_dir_fails_before_work(digits_root, small_config, tmp_path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    calls = []

    class Spy(ImageFolderDataset):
        def load_base(self, i):
            calls.append(i)
            return super().load_base(i)

    with pytest.raises(OutputPathError, match="not writable"):
        CachedDataset(Spy(digits_root, small_config), CacheConfig(cache_dir=str(blocker / "sub")))
    assert calls == []


def _build_in_process(root: str, cache_dir: str, out: mp.Queue) -> None:
    ds = ImageFolderDataset(root, ImagePipelineConfig(resize=24, crop=20, seed=7))
    cached = CachedDataset(ds, CacheConfig(cache_dir=cache_dir))
    out.put((str(cached.entry), cached.rebuilt_reason, float(cached[3][0].sum())))


def test_two_processes_building_the_same_cache_agree(digits_root, tmp_path) -> None:
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_build_in_process, args=(str(digits_root), str(tmp_path / "c"), out))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert results[0] == results[1] and results[0][1] is None
    assert len(_entry_files(tmp_path / "c")) == 1  # no stray temp dirs, one entry
    assert not [p for p in (tmp_path / "c").iterdir() if p.name.startswith(".") and p.is_dir()]
    assert cache_info(tmp_path / "c", verify="full")[0]["valid"]


def test_dataloader_workers_follow_set_epoch(digits_root, small_config, tmp_path) -> None:
    ds = ImageFolderDataset(digits_root, small_config)
    cached = CachedDataset(ds, CacheConfig(cache_dir=str(tmp_path / "c")))
    loader = torch.utils.data.DataLoader(
        cached, batch_size=8, num_workers=1, persistent_workers=True
    )
    for epoch in (0, 1):
        cached.set_epoch(epoch)
        x, y = next(iter(loader))
        ds.set_epoch(epoch)
        assert torch.equal(x, torch.stack([ds[i][0] for i in range(8)]))
        assert y.tolist() == [ds.samples[i][1] for i in range(8)]


class _Squares(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 10

    def __getitem__(self, i):
        return torch.full((2, 3), float(i * i)), np.array([i], dtype=np.int32), i


def test_generic_dataset_cached_whole_with_key(tmp_path) -> None:
    with pytest.raises(ConfigError, match="key"):
        CachedDataset(_Squares(), CacheConfig(cache_dir=str(tmp_path / "c")))
    cached = CachedDataset(_Squares(), CacheConfig(cache_dir=str(tmp_path / "c"), key="squares-v1"))
    x, arr, i = cached[3]
    assert torch.equal(x, torch.full((2, 3), 9.0)) and arr.tolist() == [3] and i == 3
    with pytest.raises(ConfigError, match="precompute_epochs"):
        CachedDataset(
            _Squares(), CacheConfig(cache_dir=str(tmp_path / "c"), key="k", precompute_epochs=2)
        )


def test_info_and_clear(digits_root, small_config, tmp_path) -> None:
    CachedDataset(
        ImageFolderDataset(digits_root, small_config), CacheConfig(cache_dir=str(tmp_path / "c"))
    )
    rows = cache_info(tmp_path / "c")
    assert len(rows) == 1 and rows[0]["n"] == 40 and rows[0]["valid"]
    with pytest.raises(ConfigError, match="no cache entry"):
        clear_cache(tmp_path / "c", name="nope")
    assert clear_cache(tmp_path / "c") == [rows[0]["name"]]
    assert cache_info(tmp_path / "c") == []


@pytest.mark.parametrize(
    "kwargs", [dict(store="gpu"), dict(max_bytes=0), dict(precompute_epochs=-1), dict(verify="x")]
)
def test_cache_config_rejects_bad_values(kwargs) -> None:
    with pytest.raises(ConfigError):
        CacheConfig(**kwargs)


def test_cache_config_round_trips() -> None:
    cfg = CacheConfig(store="ram", precompute_epochs=3, max_bytes=10**6)
    assert CacheConfig.from_dict(cfg.to_dict()) == cfg
    assert os.fspath(CacheConfig(cache_dir="/x").resolved_dir()) == "/x"


def test_file_lock_held_elsewhere_times_out_with_a_clear_error(tmp_path) -> None:
    from accelkit.data._common import file_lock

    with file_lock(tmp_path / "x.lock"):
        with pytest.raises(OutputPathError, match="held for over"):
            with file_lock(tmp_path / "x.lock", timeout_s=0.2):
                pass
    with file_lock(tmp_path / "x.lock", timeout_s=0.2):  # released: free again
        pass


def test_read_only_valid_cache_is_still_served(
    digits_root, small_config, tmp_path, monkeypatch
) -> None:
    cfg = CacheConfig(cache_dir=str(tmp_path / "c"))
    ds = ImageFolderDataset(digits_root, small_config)
    CachedDataset(ds, cfg)

    def refuse(*a, **k):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(os, "utime", refuse)
    again = CachedDataset(ds, cfg)
    assert again.rebuilt_reason is None and torch.equal(again[1][0], ds[1][0])


def test_full_disk_is_reported_before_any_decode(
    digits_root, small_config, tmp_path, monkeypatch
) -> None:
    import collections
    import shutil

    calls = []

    class Spy(ImageFolderDataset):
        def load_base(self, i):
            calls.append(i)
            return super().load_base(i)

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(OutputPathError, match="MiB free"):
        CachedDataset(Spy(digits_root, small_config), CacheConfig(cache_dir=str(tmp_path / "c")))
    assert calls == []
