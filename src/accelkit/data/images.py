"""An input-bound image workload: real PNG/JPEG files decoded with Pillow and augmented per read.

It buys a realistic baseline for the loader techniques (what a torchvision-style
folder pipeline costs); it costs a one-time render of scikit-learn digits to disk.
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from accelkit.config import Config
from accelkit.data._common import (
    DATA_FORMAT_VERSION,
    atomic_write_json,
    cache_root,
    ensure_writable_dir,
    fingerprint_json,
    hash_uniform,
    replace_dir,
    sha256_file,
)
from accelkit.errors import AccelkitError, ConfigError
from accelkit.outdir import make_temp_dir

__all__ = [
    "CorruptImageError",
    "ImageFolderDataset",
    "ImagePipelineConfig",
    "augment_batch",
    "images_workload",
    "render_digits_folder",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_ON_ERROR = ("raise", "skip")
_MODES = ("RGB", "L")


class CorruptImageError(AccelkitError):
    """An image file cannot be decoded; the message names the file."""


@dataclass
class ImagePipelineConfig(Config):
    """Decode → resize (deterministic, cacheable) → rotate/crop/flip (random) → normalize.

    on_error: "raise" stops at the first unreadable file with its path;
    "skip" warns once per file with its path and serves the next readable
    sample *with that sample's own label* (never a wrong label).
    """

    resize: int = 64
    crop: int = 56
    hflip_p: float = 0.5
    max_rotation_deg: float = 15.0
    mode: str = "RGB"
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.25,)
    seed: int = 0
    on_error: str = "raise"
    version: int = field(default=DATA_FORMAT_VERSION)

    def __post_init__(self) -> None:
        if self.resize < 1:
            raise ConfigError(f"resize={self.resize!r}: expected a positive pixel size, e.g. 64")
        if not 1 <= self.crop <= self.resize:
            raise ConfigError(f"crop={self.crop!r}: expected 1 <= crop <= resize={self.resize}")
        if not 0.0 <= self.hflip_p <= 1.0:
            raise ConfigError(f"hflip_p={self.hflip_p!r}: expected a probability in [0, 1]")
        if not 0.0 <= self.max_rotation_deg <= 180.0:
            raise ConfigError(f"max_rotation_deg={self.max_rotation_deg!r}: expected 0..180")
        if self.mode not in _MODES:
            raise ConfigError(f"mode={self.mode!r}: expected one of {_MODES}")
        if self.on_error not in _ON_ERROR:
            raise ConfigError(f"on_error={self.on_error!r}: expected one of {_ON_ERROR}")
        self.mean, self.std = tuple(self.mean), tuple(self.std)
        channels = 3 if self.mode == "RGB" else 1
        for name, vals in (("mean", self.mean), ("std", self.std)):
            if len(vals) not in (1, channels):
                raise ConfigError(
                    f"{name}={vals!r}: expected 1 or {channels} values for mode {self.mode}"
                )
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"std={self.std!r}: every value must be > 0")

    @property
    def channels(self) -> int:
        return 3 if self.mode == "RGB" else 1

    @property
    def is_random(self) -> bool:
        return self.crop < self.resize or self.hflip_p > 0 or self.max_rotation_deg > 0

    def deterministic_part(self) -> dict[str, Any]:
        """The fields that decide the decoded, resized image (the cacheable part)."""
        return {"resize": self.resize, "mode": self.mode, "version": self.version}

    def random_part(self) -> dict[str, Any]:
        """The fields that decide the augmentation (keys precomputed epochs)."""
        return {
            "crop": self.crop,
            "hflip_p": self.hflip_p,
            "max_rotation_deg": self.max_rotation_deg,
            "seed": self.seed,
        }


# ----------------------------------------------------------------------------- rendering


def _default_images_root(image_size: int) -> Path:
    return cache_root() / "images" / f"digits-{image_size}px-v{DATA_FORMAT_VERSION}"


def render_digits_folder(
    root: str | Path | None = None, *, image_size: int = 128, limit: int | None = None
) -> Path:
    """Write scikit-learn digits as real image files ``root/<label>/<idx>.{png,jpg}``, once.

    Even indices become PNG, odd ones JPEG (quality 90), upscaled bicubically to
    ``image_size``. The folder is written under a temp name and renamed in one
    step, so a reader never sees a half-written folder; an existing complete
    folder with the same parameters is reused.
    """
    if image_size < 8:
        raise ConfigError(f"image_size={image_size!r}: expected >= 8 (the digits are 8x8)")
    root = Path(root) if root is not None else _default_images_root(image_size)
    manifest = {
        "source": "sklearn.load_digits",
        "image_size": image_size,
        "limit": limit,
        "version": DATA_FORMAT_VERSION,
    }
    existing = root / "manifest.json"
    if existing.exists():
        import json

        found = json.loads(existing.read_text())
        if found == manifest:
            return root
        raise ConfigError(
            f"{str(root)!r} holds images rendered with {found}, not {manifest}; "
            "pass another root or delete that folder"
        )
    if root.exists() and any(root.iterdir()):
        raise ConfigError(
            f"{str(root)!r} exists and is not a rendered digits folder; pass an empty or new root"
        )

    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.clip(digits.images * (255.0 / 16.0), 0, 255).astype(np.uint8)
    labels = digits.target.astype(int)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]

    ensure_writable_dir(root.parent, need_bytes=len(images) * image_size * image_size)
    tmp = make_temp_dir(root.parent, prefix=f".{root.name}.tmp-")  # umask, not mkdtemp's 0700
    try:
        for label in sorted(set(labels.tolist())):
            (tmp / str(label)).mkdir()
        for idx, (img, label) in enumerate(zip(images, labels, strict=True)):
            pil = Image.fromarray(img, mode="L").resize((image_size, image_size), Image.BICUBIC)
            # A faint per-image colour tint makes the three RGB planes differ, as photos do.
            tint = np.array([1.0, 0.9 + 0.1 * (idx % 3) / 2, 0.8 + 0.2 * (idx % 5) / 4])
            rgb = (
                (np.asarray(pil, dtype=np.float32)[..., None] * tint).clip(0, 255).astype(np.uint8)
            )
            out = Image.fromarray(rgb, mode="RGB")
            if idx % 2 == 0:
                out.save(tmp / str(label) / f"{idx:05d}.png")
            else:
                out.save(tmp / str(label) / f"{idx:05d}.jpg", quality=90)
        atomic_write_json(tmp / "manifest.json", manifest)
        if root.exists():
            root.rmdir()  # empty (checked above); replace_dir needs the name free or empty
        replace_dir(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


# ----------------------------------------------------------------------------- augmentation


def augment_params(
    config: ImagePipelineConfig, height: int, width: int, indices: np.ndarray, epoch: int
) -> dict[str, np.ndarray]:
    """Per-sample crop offsets, flips and angles: a pure function of (seed, epoch, index)."""
    seed = config.seed
    off_y = np.floor(hash_uniform(seed, epoch, indices, 0) * (height - config.crop + 1)).astype(
        np.int64
    )
    off_x = np.floor(hash_uniform(seed, epoch, indices, 1) * (width - config.crop + 1)).astype(
        np.int64
    )
    flip = hash_uniform(seed, epoch, indices, 2) < config.hflip_p
    angle = (hash_uniform(seed, epoch, indices, 3) * 2.0 - 1.0) * config.max_rotation_deg
    return {"off_y": off_y, "off_x": off_x, "flip": flip, "angle_deg": angle}


def augment_batch(
    base: torch.Tensor, indices: np.ndarray, epoch: int, config: ImagePipelineConfig
) -> torch.Tensor:
    """Rotate about the centre, crop and flip a uint8 batch (B, C, H, W) → uint8 (B, C, crop, crop).

    One bilinear grid_sample per batch: each output pixel is mapped back through
    flip → crop offset → rotation to its source location, so the whole batch is
    vectorized. A single sample is the batch of one, so batched and per-read
    results are identical.
    """
    batch, _, height, width = base.shape
    if not config.is_random:
        return base
    p = augment_params(config, height, width, np.asarray(indices), epoch)
    crop = config.crop
    if not np.any(p["angle_deg"]):
        # Pure crop + flip: slicing is exact and much cheaper than resampling.
        out = torch.empty((batch, base.shape[1], crop, crop), dtype=torch.uint8)
        for b in range(batch):
            y, x = int(p["off_y"][b]), int(p["off_x"][b])
            tile = base[b, :, y : y + crop, x : x + crop]
            out[b] = tile.flip(-1) if p["flip"][b] else tile
        return out
    u = torch.arange(crop, dtype=torch.float32)
    flip = torch.from_numpy(p["flip"])[:, None]
    ux = torch.where(flip, (crop - 1) - u[None, :], u[None, :])  # (B, crop)
    px = ux[:, None, :] + torch.from_numpy(p["off_x"]).float()[:, None, None]  # (B, 1, crop)
    py = u[None, :, None] + torch.from_numpy(p["off_y"]).float()[:, None, None]  # (B, crop, 1)
    px, py = torch.broadcast_tensors(px, py)  # (B, crop, crop) each
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    theta = torch.from_numpy(np.deg2rad(p["angle_deg"])).float()[:, None, None]
    cos, sin = torch.cos(theta), torch.sin(theta)
    sx = cos * (px - cx) - sin * (py - cy) + cx
    sy = sin * (px - cx) + cos * (py - cy) + cy
    # Pixel centres → normalized coordinates for align_corners=False.
    grid = torch.stack(((sx + 0.5) / width * 2 - 1, (sy + 0.5) / height * 2 - 1), dim=-1)
    out = torch.nn.functional.grid_sample(
        base.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return out.round_().clamp_(0, 255).to(torch.uint8)


def normalize_batch(x: torch.Tensor, config: ImagePipelineConfig) -> torch.Tensor:
    """uint8 (B, C, h, w) → float32 (x / 255 - mean) / std."""
    mean = torch.tensor(config.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(config.std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x.float().div_(255.0) - mean).div_(std)


# ----------------------------------------------------------------------------- dataset


class ImageFolderDataset(torch.utils.data.Dataset):
    """Map-style dataset over ``root/<class>/<file>``: Pillow decode + augment on every read.

    ``__getitem__(i)`` returns ``(float32 (C, crop, crop), label)``. Its work is split
    into ``load_base`` (decode + resize, deterministic), ``augment`` (random, keyed
    by (seed, epoch, index)) and ``finalize`` (normalize), which is what
    ``accelkit.data.cache.CachedDataset`` caches and vectorizes.
    """

    def __init__(self, root: str | Path, config: ImagePipelineConfig | None = None) -> None:
        self.root = Path(root)
        self.config = config or ImagePipelineConfig()
        if not self.root.is_dir():
            raise ConfigError(
                f"image root {str(self.root)!r} is not a directory; render one with render_digits_folder()"
            )
        classes = sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        if not classes:
            raise ConfigError(
                f"image root {str(self.root)!r} has no class sub-folders (<root>/<class>/<image>)"
            )
        self.classes = classes
        self.samples: list[tuple[Path, int]] = []
        for label, name in enumerate(classes):
            for path in sorted((self.root / name).iterdir()):
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    self.samples.append((path, label))
        if not self.samples:
            raise ConfigError(f"image root {str(self.root)!r} holds no {IMAGE_SUFFIXES} files")
        self.bad_files: set[str] = set()
        # Shared memory so a set_epoch() in the main process reaches persistent workers.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def base_shape(self) -> tuple[int, int, int]:
        """Shape of ``load_base`` output: (C, resize, resize)."""
        return (self.config.channels, self.config.resize, self.config.resize)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(int(epoch))

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def fingerprint(self, mode: str = "stat") -> str:
        """sha256 of the source files and the deterministic transform config.

        mode "stat" hashes (path, size, mtime_ns) of every file (cheap); "content"
        hashes every file's bytes. Either way, an edited, added or removed file
        or a changed resize/mode gives a new fingerprint.
        """
        if mode not in ("stat", "content"):
            raise ConfigError(f"fingerprint mode={mode!r}: expected 'stat' or 'content'")
        files = []
        for path, label in self.samples:
            rel = str(path.relative_to(self.root))
            if mode == "content":
                files.append((rel, label, sha256_file(path)))
            else:
                st = path.stat()
                files.append((rel, label, st.st_size, st.st_mtime_ns))
        return fingerprint_json(
            {
                "files": files,
                "transform": self.config.deterministic_part(),
                "on_error": self.config.on_error,
                "kind": "ImageFolderDataset",
            }
        )

    def augment_fingerprint(self) -> str:
        return fingerprint_json(self.config.random_part())

    def _decode(self, i: int) -> np.ndarray:
        from PIL import Image

        path, label = self.samples[i]
        try:
            with Image.open(path) as im:
                im = im.convert(self.config.mode)
                if im.size != (self.config.resize, self.config.resize):
                    im = im.resize((self.config.resize, self.config.resize), Image.BILINEAR)
                arr = np.array(im, dtype=np.uint8)
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... for bad files
            raise CorruptImageError(
                f"cannot decode image {str(path)!r} (class {self.classes[label]!r}): {exc}; "
                "fix or remove the file, or use on_error='skip'"
            ) from exc
        return (
            arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))
        )  # (C, H, W)

    def load_base(self, i: int) -> tuple[np.ndarray, int]:
        """Decode + resize sample ``i`` → (uint8 (C, resize, resize), label).

        Under on_error="skip" an unreadable file is reported once (with its path)
        and the next readable sample is returned together with *its* label.
        """
        n = len(self.samples)
        for step in range(n):
            j = (i + step) % n
            try:
                return self._decode(j), self.samples[j][1]
            except CorruptImageError as exc:
                if self.config.on_error == "raise":
                    raise
                key = str(self.samples[j][0])
                if key not in self.bad_files:
                    self.bad_files.add(key)
                    warnings.warn(f"skipping unreadable image: {exc}", UserWarning, stacklevel=2)
        raise CorruptImageError(
            f"no readable image under {str(self.root)!r}; every file failed to decode"
        )

    def augment(self, base: torch.Tensor, indices: np.ndarray, epoch: int) -> torch.Tensor:
        return augment_batch(base, indices, epoch, self.config)

    def finalize(self, x: torch.Tensor) -> torch.Tensor:
        return normalize_batch(x, self.config)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        base, label = self.load_base(i)
        x = self.augment(torch.from_numpy(base)[None], np.array([i]), self.epoch)
        return self.finalize(x)[0], label


def images_workload(
    root: str | Path | None = None,
    config: ImagePipelineConfig | None = None,
    *,
    image_size: int = 128,
    limit: int | None = None,
) -> ImageFolderDataset:
    """The embedded input-bound workload: digits rendered once to files, then a folder dataset."""
    folder = render_digits_folder(root, image_size=image_size, limit=limit)
    return ImageFolderDataset(folder, config)
