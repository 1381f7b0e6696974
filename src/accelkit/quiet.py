"""Quiet by default: third-party noise goes to a log file, the terminal keeps accelkit's own lines.

Dependencies talk a lot while accelkit works: the TorchScript exporter dumps whole IR graphs
from C++ when an ONNX export fails, torchao prints extension-load failures, torch and
transformers raise deprecation warnings, transformers draws its weight-loading bar. None of it
is for the user of a benchmark, and it drowns the result lines. Inside :func:`quiet`:

- file descriptors 1 and 2 point at the log file, so writes from C/C++ and subprocesses land
  there; ``sys.stdout``/``sys.stderr`` do too (Python ``print``, tqdm bars, ``logging``
  handlers and the last-resort handler all write through them);
- warnings raised by code outside accelkit are written to the log; accelkit's own warnings
  still reach the terminal (and still obey the filters, so tests keep them as errors);
- accelkit's own output goes through :attr:`Quiet.console`, a rich Console on a duplicate of
  the original terminal descriptor, so progress bars and result lines stay visible.

The log is written to a scratch file under the cache and, when anything was logged, moved to
``log_to`` (``OUT/log.txt`` for commands with an output folder) or kept under
``$ACCELKIT_CACHE/logs``; its path is printed once at the end. ``verbose=True`` (or
``ACCELKIT_VERBOSE=1``) passes everything through untouched.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.file_proxy import FileProxy
from rich.markup import escape

from accelkit.errors import AccelkitError

__all__ = ["Quiet", "log_exception", "quiet", "verbose_from_env"]

_ACTIVE: list[Quiet] = []  # innermost last; nested quiet() calls share the outer log


def verbose_from_env() -> bool:
    """``ACCELKIT_VERBOSE=1`` (or true/yes) turns capture off for every command."""
    return os.environ.get("ACCELKIT_VERBOSE", "").strip().lower() in ("1", "true", "yes")


def _log_dir() -> Path:
    base = Path(os.environ.get("ACCELKIT_CACHE", Path.home() / ".cache" / "accelkit")) / "logs"
    try:
        base.mkdir(parents=True, exist_ok=True)
        if os.access(base, os.W_OK):
            return base
    except OSError:
        pass
    # a read-only cache must not stop a benchmark: the system temp folder always takes a log
    return Path(tempfile.gettempdir())


def _terminal(stream: IO[str] | None, fd: int) -> tuple[IO[str], int | None]:
    """A stream that reaches what ``stream`` reaches today, even after ``fd`` is redirected.

    A stream writing to ``fd`` itself is replaced by one on a duplicate of the descriptor; any
    other stream (pytest's capsys buffer, a wrapper) never touches ``fd`` and is kept as is.
    """
    try:
        uses_fd = stream is not None and stream.fileno() == fd
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        uses_fd = False
    if not uses_fd:
        return (stream or sys.__stdout__), None
    dup = os.dup(fd)
    encoding = getattr(stream, "encoding", None) or "utf-8"
    return open(dup, "w", buffering=1, encoding=encoding, errors="replace", closefd=False), dup


def _from_accelkit() -> bool:
    """Whether the code that called ``warnings.warn`` lives in accelkit (this module excluded)."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__", "") in ("warnings", __name__):
        frame = frame.f_back
    name = frame.f_globals.get("__name__", "") if frame is not None else ""
    return name == "accelkit" or name.startswith("accelkit.")


class _Capture(FileProxy):
    """``sys.stdout``/``sys.stderr`` inside :func:`quiet`: text goes to the log.

    A FileProxy so that a rich progress bar started inside sees the stream already redirected
    and leaves it alone (rather than printing third-party output above the bar). After the block
    it forwards to the original stream: a logging handler or tqdm bar created inside keeps a
    reference to it and must never write to the closed log.
    """

    def __init__(self, log_file: IO[str], original: IO[str]) -> None:
        super().__init__(Console(file=io.StringIO()), original)
        self._log: IO[str] | None = log_file
        self._original = original

    def release(self) -> None:
        self._log = None

    def _target(self) -> IO[str]:
        return self._log if self._log is not None else self._original

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def fileno(self) -> int:
        return self._target().fileno()

    def isatty(self) -> bool:
        return self._log is None and self._original.isatty()


def _set_stream(handler: logging.StreamHandler, stream: IO[str]) -> None:
    """``handler.setStream(stream)`` without failing on the old stream: a handler a library made
    under an earlier capture (pytest's, a finished ``quiet`` block's) may still point at a stream
    that has since closed, and ``setStream`` flushes the old stream first."""
    with contextlib.suppress(ValueError, OSError):
        handler.flush()
    handler.acquire()
    try:
        handler.stream = stream
    finally:
        handler.release()


def _is_console(stream: Any) -> bool:
    """A stream a handler writes to the terminal with: not None (torch's trace handler opens its
    own file later), not a file on disk, not a test's StringIO record, not closed."""
    if stream is None or isinstance(stream, io.StringIO) or getattr(stream, "closed", False):
        return False
    name = getattr(stream, "name", None)
    return not (isinstance(name, str) and not name.startswith("<"))


def _dependency_stream_handlers() -> list[logging.StreamHandler]:
    """Console handlers that dependencies installed on their own loggers (transformers keeps one
    with ``propagate=False``), bound to whatever stderr was when they were made."""
    loggers = [logging.getLogger()] + [
        lg for name, lg in logging.root.manager.loggerDict.items()
        if isinstance(lg, logging.Logger) and not (name == "accelkit" or name.startswith("accelkit."))
    ]
    found = []
    for lg in loggers:
        for h in lg.handlers:
            # files stay files; a StringIO is a test harness's record (pytest's caplog), not a console
            # (a handler left bound to a closed stream by earlier code is left alone: nothing reads it)
            # only handlers bound to the terminal: torch's trace handler opens and closes a stream of
            # its own (None until then), and would close the log if it were handed it
            # a handler whose stream is a read-only property (logging's last-resort kind, which some
            # libraries install) writes to whatever sys.stderr is, which the block redirects anyway
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) \
                    and not isinstance(getattr(type(h), "stream", None), property) and _is_console(h.stream):
                found.append(h)
    return found


class Quiet:
    """What a command writes to while third-party output is captured.

    ``console`` prints to the real terminal; ``echo`` prints plain text there (no markup);
    ``lines_logged`` counts what the log received.
    """

    def __init__(self, console: Console, log_file: IO[str] | None, scratch: Path | None) -> None:
        self.console = console
        self.log_file = log_file
        self.scratch = scratch
        self._status: Any = None

    def phase(self, text: str) -> None:
        """Show ``text`` as the command's current phase (a spinner line, gone when the block ends)."""
        if self._status is None:
            self._status = self.console.status(escape(text))
            self._status.start()
        else:
            self._status.update(escape(text))

    def _stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    @property
    def capturing(self) -> bool:
        return self.log_file is not None

    def echo(self, text: str = "") -> None:
        """Print ``text`` as it is (``[`` in a variant name is not markup) on the terminal."""
        self.console.print(escape(text), highlight=False, soft_wrap=True)

    def log(self, text: str) -> None:
        """Write ``text`` to the log (or to stderr when not capturing)."""
        target = self.log_file if self.log_file is not None else sys.stderr
        target.write(text if text.endswith("\n") else text + "\n")
        target.flush()


def log_exception(exc: BaseException, context: str = "") -> None:
    """Put the full traceback of ``exc`` into the active log, for a failure shown as one line.

    Outside :func:`quiet` (library use) nothing is written: the caller's one-line reason is the
    whole report there, as before.
    """
    if not _ACTIVE:
        return
    head = f"--- {context} ---\n" if context else ""
    _ACTIVE[-1].log(head + "".join(traceback.format_exception(exc)))


@contextlib.contextmanager
def quiet(log_to: str | os.PathLike | None = None, *, verbose: bool = False, name: str = "accelkit") -> Iterator[Quiet]:
    """Capture third-party output of the block into a log; yield a :class:`Quiet`.

    ``log_to`` is where the log ends up when the block succeeded and something was logged
    (e.g. ``OUT/log.txt``); otherwise it stays under ``$ACCELKIT_CACHE/logs/<name>-<time>.log``.
    """
    if _ACTIVE:  # a command calling another command's code: one log per run
        yield _ACTIVE[-1]
        return
    if verbose or verbose_from_env():
        q = Quiet(Console(), None, None)
        _ACTIVE.append(q)
        try:
            yield q
        finally:
            q._stop()
            _ACTIVE.pop()
        return

    for s in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            s.flush()
    term_out, dup_out = _terminal(sys.stdout, 1)
    term_err, dup_err = _terminal(sys.stderr, 2)
    # the width is read while the terminal is still on fds 1/2 (rich looks there for its size)
    probe = Console(file=term_out)
    console = Console(file=term_out, width=probe.width if probe.is_terminal else None)

    scratch = _log_dir() / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    log_file = open(scratch, "a", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    old_streams = sys.stdout, sys.stderr
    captures = _Capture(log_file, sys.stdout), _Capture(log_file, sys.stderr)
    q = Quiet(console, log_file, scratch)
    ok = False
    with warnings.catch_warnings():
        previous = warnings.showwarning

        def showwarning(message: Any, category: type[Warning], filename: str, lineno: int,
                        file: IO[str] | None = None, line: str | None = None) -> None:
            if _from_accelkit():
                previous(message, category, filename, lineno, term_err, line)
            else:
                log_file.write(warnings.formatwarning(message, category, filename, lineno, line))

        warnings.showwarning = showwarning
        # dependencies that log to the root logger (ONNX Runtime's quantizers) or through handlers
        # someone else installed (pytest, a notebook) would bypass the redirected streams
        handler = logging.StreamHandler(log_file)
        handler.addFilter(lambda r: not (r.name == "accelkit" or r.name.startswith("accelkit.")))
        logging.getLogger().addHandler(handler)
        swapped = [(h, h.stream) for h in _dependency_stream_handlers() if h is not handler]
        for h, _ in swapped:
            _set_stream(h, log_file)
        try:
            for fd in (1, 2):
                os.dup2(log_file.fileno(), fd)
            sys.stdout, sys.stderr = captures  # type: ignore[assignment]
            _ACTIVE.append(q)
            yield q
            ok = True
        finally:
            q._stop()
            _ACTIVE.pop()
            logging.getLogger().removeHandler(handler)
            for h, stream in swapped:
                _set_stream(h, stream)
            for s in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    s.flush()
            sys.stdout, sys.stderr = old_streams
            for c in captures:
                c.release()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            log_file.close()
            final = _finish_log(scratch, Path(log_to) if log_to is not None and ok else None)
            # a bad-input error is one line by promise: the libraries' chatter is not its cause
            bad_input = isinstance(sys.exc_info()[1], AccelkitError)
            if final is not None and not bad_input:
                # on stderr: `--format json` output on stdout stays parseable; after a crash it
                # comes just before the error, saying where the details are
                note = f"messages from libraries → {final} (--verbose shows them)"
                Console(file=term_err, stderr=True).print(f"[dim]{escape(note)}[/dim]", highlight=False, soft_wrap=True)
            for stream, dup in ((term_out, dup_out), (term_err, dup_err)):
                if dup is not None:
                    stream.flush()
                    stream.close()
                    os.close(dup)


def _finish_log(scratch: Path, log_to: Path | None) -> Path | None:
    """Drop an empty log; move a non-empty one to ``log_to`` when given. Returns where it is."""
    try:
        if scratch.stat().st_size == 0:
            scratch.unlink()
            return None
    except OSError:
        return None
    if log_to is None:
        return scratch
    try:
        log_to.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(scratch), str(log_to))
    except OSError:
        return scratch  # an unwritable --out keeps the log in the cache rather than losing it
    return log_to
