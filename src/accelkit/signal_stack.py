"""Keep the calling thread's alternate signal stack across a library call that replaces it.

OpenVINO's ``compile_model`` points the calling thread's signal stack (``sigaltstack``) at a
buffer of its own, which it later frees. A signal handled there afterwards kills the process
with SIGSEGV: SIGCHLD when a subprocess exits, once PyTorch's DataLoader has installed its
handler (Python installs every handler with SA_ONSTACK). Linux and macOS; elsewhere a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

__all__ = ["keep_signal_stack"]


class _StackT(ctypes.Structure):  # stack_t: the same layout on Linux and macOS
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


@cache
def _sigaltstack():  # noqa: ANN202 - a ctypes function or None
    if not sys.platform.startswith(("linux", "darwin")):
        return None
    try:
        fn = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).sigaltstack
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.POINTER(_StackT), ctypes.POINTER(_StackT)]
    fn.restype = ctypes.c_int
    return fn


@contextmanager
def keep_signal_stack() -> Iterator[None]:
    """Run the body, then give this thread back the signal stack it had before."""
    fn = _sigaltstack()
    old = _StackT()
    if fn is None or fn(None, ctypes.byref(old)) != 0:
        yield
        return
    try:
        yield
    finally:
        fn(ctypes.byref(old), None)
