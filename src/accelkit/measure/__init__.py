"""Measurement core: interleaved timing, memory, size, FLOPs and the machine's roofline."""

from accelkit.measure.model_stats import (
    count_flops,
    count_parameters,
    peak_memory_mb,
    serialized_size_mb,
    thread_count,
)
from accelkit.measure.roofline import Roofline, measure_roofline
from accelkit.measure.timing import Timing, compare_interleaved, percentile, synchronize

__all__ = [
    "Roofline",
    "Timing",
    "compare_interleaved",
    "count_flops",
    "count_parameters",
    "measure_roofline",
    "peak_memory_mb",
    "percentile",
    "serialized_size_mb",
    "synchronize",
    "thread_count",
]
