"""Data pipeline acceleration: an input-bound image workload, a dataset cache,
a DataLoader tuner, a device prefetcher and a tokenized text stream.

Each technique is its own module; this package re-exports their public names.
"""

from accelkit.data.cache import CacheConfig, CachedDataset, cache_info, clear_cache
from accelkit.data.images import (
    CorruptImageError,
    ImageFolderDataset,
    ImagePipelineConfig,
    images_workload,
    render_digits_folder,
)
from accelkit.data.prefetch import DevicePrefetcher, PrefetchConfig, prefetch_to_device
from accelkit.data.text import TextWindowConfig, TextWindowStream, TokenizedText, pydoc_corpus
from accelkit.data.tune_loader import LoaderTuneConfig, LoaderTuneResult, tune_loader

__all__ = [
    "CacheConfig",
    "CachedDataset",
    "CorruptImageError",
    "DevicePrefetcher",
    "ImageFolderDataset",
    "ImagePipelineConfig",
    "LoaderTuneConfig",
    "LoaderTuneResult",
    "PrefetchConfig",
    "TextWindowConfig",
    "TextWindowStream",
    "TokenizedText",
    "cache_info",
    "clear_cache",
    "images_workload",
    "prefetch_to_device",
    "pydoc_corpus",
    "render_digits_folder",
    "tune_loader",
]
