"""The one atomic file write every module uses: temp file in the same folder, fsync, rename.

A reader sees the old file or the new one, never half of either.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["atomic_write_bytes"]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file and ``os.replace``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the name is chosen before the file exists, so an exception raised by a signal handler at any
    # point after the open (even inside it, where mkstemp would not yet have returned the name)
    # still knows what to remove; 0o666 lets the umask decide the mode, as any other write
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path
