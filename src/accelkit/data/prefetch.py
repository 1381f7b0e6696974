"""Device prefetcher: fetch (and copy to the device) the next batches while the model computes.

It buys overlap of loading and host-to-device copies with compute (pinned memory
+ a side CUDA stream on GPU, a background thread everywhere); it costs ``depth``
batches of extra memory and one thread.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from accelkit.config import Config
from accelkit.errors import ConfigError, DeviceUnavailableError

__all__ = ["DevicePrefetcher", "PrefetchConfig", "move_to_device", "prefetch_to_device"]


@dataclass
class PrefetchConfig(Config):
    """device: "cpu", "cuda" or "cuda:N"; depth: batches ready ahead of the consumer;
    pin_memory: page-lock host batches before copying (None = only on CUDA)."""

    device: str = "cpu"
    depth: int = 2
    pin_memory: bool | None = None

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise ConfigError(f"depth={self.depth!r}: expected >= 1 batches ahead")
        try:
            dev = torch.device(self.device)
        except RuntimeError as exc:
            raise ConfigError(
                f"device={self.device!r}: expected 'cpu', 'cuda' or 'cuda:N'"
            ) from exc
        if dev.type not in ("cpu", "cuda"):
            raise ConfigError(f"device={self.device!r}: expected 'cpu', 'cuda' or 'cuda:N'")


def move_to_device(
    batch: Any, device: torch.device, *, pin: bool = False, non_blocking: bool = False
) -> Any:
    """Copy every tensor in a nested tuple/list/dict batch to ``device``; other leaves pass through."""
    if isinstance(batch, torch.Tensor):
        if pin and batch.device.type == "cpu" and not batch.is_pinned():
            batch = batch.pin_memory()
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, tuple | list):
        moved = [move_to_device(b, device, pin=pin, non_blocking=non_blocking) for b in batch]
        return type(batch)(moved) if not hasattr(batch, "_fields") else type(batch)(*moved)
    if isinstance(batch, dict):
        return {
            k: move_to_device(v, device, pin=pin, non_blocking=non_blocking)
            for k, v in batch.items()
        }
    return batch


def _record_stream(batch: Any, stream: Any) -> None:
    # Tell the caching allocator the consumer's stream uses memory made on the side stream.
    if isinstance(batch, torch.Tensor):
        batch.record_stream(stream)
    elif isinstance(batch, tuple | list):
        for b in batch:
            _record_stream(b, stream)
    elif isinstance(batch, dict):
        for b in batch.values():
            _record_stream(b, stream)


_END = object()


class DevicePrefetcher:
    """Iterate ``loader`` with up to ``depth`` batches fetched and on ``device`` ahead of use.

    A background thread pulls from the loader (so collation / main-process loading
    overlaps the consumer's compute). On CUDA it pins each batch and issues the
    copy on a side stream, recording an event the consumer's stream waits on, so
    the copy overlaps compute as well. ``wait_s`` accumulates the time the
    consumer spent blocked waiting for data; ``batches`` counts batches served.
    """

    def __init__(self, loader: Iterable[Any], config: PrefetchConfig | None = None) -> None:
        self.loader = loader
        self.config = config or PrefetchConfig()
        self.device = torch.device(self.config.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"device={self.config.device!r} but CUDA is not available here; use device='cpu'"
            )
        self.pin = (
            self.config.pin_memory
            if self.config.pin_memory is not None
            else self.device.type == "cuda"
        )
        self.wait_s = 0.0
        self.batches = 0
        self.produced = 0  # batches the thread has fetched so far (for introspection and tests)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def _produce(self, out: queue.Queue, stream: Any) -> None:
        try:
            for batch in self.loader:
                if self._stop.is_set():
                    return
                event = None
                if stream is not None:
                    with torch.cuda.stream(stream):
                        batch = move_to_device(batch, self.device, pin=self.pin, non_blocking=True)
                        event = torch.cuda.Event()
                        event.record(stream)
                elif self.device.type != "cpu" or self.pin:
                    batch = move_to_device(batch, self.device, pin=self.pin)
                self.produced += 1
                while not self._stop.is_set():
                    try:
                        out.put((batch, event), timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:  # handed to the consumer, raised there with its type
            out.put((exc, None))
            return
        out.put((_END, None))

    def __iter__(self) -> Iterator[Any]:
        self.close()
        self._stop = threading.Event()
        out: queue.Queue = queue.Queue(maxsize=self.config.depth)
        stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self._thread = threading.Thread(
            target=self._produce, args=(out, stream), daemon=True, name="accelkit-prefetch"
        )
        self._thread.start()
        try:
            while True:
                t0 = time.perf_counter()
                batch, event = out.get()
                self.wait_s += time.perf_counter() - t0
                if batch is _END:
                    return
                if isinstance(batch, BaseException):
                    raise batch
                if event is not None:
                    current = torch.cuda.current_stream(self.device)
                    current.wait_event(event)
                    _record_stream(batch, current)
                self.batches += 1
                yield batch
        finally:
            self._stop.set()
            # Unblock a producer waiting on a full queue, then let it finish.
            while self._thread.is_alive():
                try:
                    out.get_nowait()
                except queue.Empty:
                    self._thread.join(timeout=0.05)

    def close(self) -> None:
        """Stop the background thread (called automatically when iteration ends or breaks)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def prefetch_to_device(
    loader: Iterable[Any], device: str = "cpu", depth: int = 2
) -> DevicePrefetcher:
    """Shorthand for ``DevicePrefetcher(loader, PrefetchConfig(device=device, depth=depth))``."""
    return DevicePrefetcher(loader, PrefetchConfig(device=device, depth=depth))
