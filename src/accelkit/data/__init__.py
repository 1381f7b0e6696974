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

__all__ = [
    "CacheConfig",
    "CachedDataset",
    "CorruptImageError",
    "ImageFolderDataset",
    "ImagePipelineConfig",
    "cache_info",
    "clear_cache",
    "images_workload",
    "render_digits_folder",
]
