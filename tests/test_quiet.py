"""Third-party noise goes to the log; the terminal keeps accelkit's own lines."""

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from accelkit.quiet import log_exception, quiet

NOISE = """
import logging, os, sys, warnings
os.write(1, b"C-LEVEL STDOUT graph(%x.1 : Float(*, 1, 8, 8))\\n")
os.write(2, b"C-LEVEL STDERR Failed to load _C_mxfp8.so\\n")
print("PY PRINT [torch.onnx] Obtain model graph")
print("PY STDERR Loading weights 100%", file=sys.stderr)
warnings.warn("DEP WARNING register_constant() is deprecated", FutureWarning)
logging.getLogger("transformers").warning("DEP LOG some advice")
"""


def _noise(module: str = "somedep") -> None:
    # compiled under a dependency's module name: the warning is attributed to "somedep"
    exec(compile(NOISE, f"{module}.py", "exec"), {"__name__": module})


def test_noise_goes_to_the_log_and_our_lines_to_the_terminal(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("ACCELKIT_CACHE", str(tmp_path / "cache"))
    log = tmp_path / "out" / "log.txt"
    with quiet(log) as q:
        _noise()
        q.echo("RESULT best plan [/]oops")
    out, err = capfd.readouterr()
    assert "RESULT best plan [/]oops" in out
    text = log.read_text()
    for tag in ("C-LEVEL STDOUT", "C-LEVEL STDERR", "PY PRINT", "PY STDERR", "DEP WARNING", "DEP LOG"):
        assert tag in text, tag
        assert tag not in out and tag not in err, tag
    assert f"→ {log}" in err and err.count("→") == 1  # its path is printed once, at the end (stderr)
    # nothing is left behind in the scratch folder once the log has moved
    assert not list((tmp_path / "cache" / "logs").glob("*.log"))


def test_nothing_logged_means_no_file_and_no_note(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("ACCELKIT_CACHE", str(tmp_path / "cache"))
    with quiet(tmp_path / "log.txt") as q:
        q.echo("only ours")
    out, _ = capfd.readouterr()
    assert out.strip() == "only ours" and not (tmp_path / "log.txt").exists()


def test_on_failure_the_log_stays_in_the_cache_and_its_path_is_said(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("ACCELKIT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(RuntimeError), quiet(tmp_path / "out" / "log.txt"):
        _noise()
        try:
            raise RuntimeError("export failed")
        except RuntimeError as exc:
            log_exception(exc, "candidate onnx")  # the full trace for a one-line failure
            raise
    _, err = capfd.readouterr()
    kept = list((tmp_path / "cache" / "logs").glob("*.log"))
    assert len(kept) == 1 and str(kept[0]) in err
    text = kept[0].read_text()
    assert "--- candidate onnx ---" in text and "Traceback" in text and "C-LEVEL STDERR" in text


def test_our_own_warnings_stay_errors_under_pytest(tmp_path, monkeypatch):
    monkeypatch.setenv("ACCELKIT_CACHE", str(tmp_path / "cache"))
    code = compile('import warnings; warnings.warn("ours", UserWarning)', "accelkit_fake.py", "exec")
    with pytest.raises(UserWarning, match="ours"), quiet(tmp_path / "log.txt"):
        exec(code, {"__name__": "accelkit.fake"})


def test_our_own_warnings_are_not_swallowed(tmp_path, monkeypatch):
    monkeypatch.setenv("ACCELKIT_CACHE", str(tmp_path / "cache"))
    code = compile('import warnings; warnings.warn("ours shown", RuntimeWarning)', "accelkit_fake.py", "exec")
    # they go on to the usual warnings machinery (the terminal, or pytest's record), not to the log
    with pytest.warns(RuntimeWarning, match="ours shown"), quiet(tmp_path / "log.txt"):
        exec(code, {"__name__": "accelkit.fake"})
    assert not (tmp_path / "log.txt").exists()


def test_verbose_passes_everything_through(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("ACCELKIT_CACHE", str(tmp_path / "cache"))
    logging.getLogger("transformers").propagate = True
    with pytest.warns(FutureWarning, match="DEP WARNING"), quiet(tmp_path / "log.txt", verbose=True):
        _noise()
    out, err = capfd.readouterr()
    assert "C-LEVEL STDOUT" in out and "PY PRINT" in out and "C-LEVEL STDERR" in err
    assert not (tmp_path / "log.txt").exists()


def test_cli_bench_keeps_the_terminal_clean(tmp_path):
    """A real `accelkit bench` in a subprocess, on a user workload that is as noisy as an exporter."""
    (tmp_path / "noisy_wl.py").write_text(textwrap.dedent("""
        import torch
        def make():
        """) + textwrap.indent(NOISE, "    ") + textwrap.indent(textwrap.dedent("""
            torch.manual_seed(0)
            model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
            return {"model": model, "inputs": torch.randn(32, 8), "labels": torch.randint(0, 3, (32,))}
        """), "    "))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(__file__).parents[1] / "src")]),
           "ACCELKIT_CACHE": str(tmp_path / "cache"), "COLUMNS": "80", "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "o" / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "accelkit", "bench", "-w", "noisy_wl:make", "--variants", "baseline",
         "--repeats", "1", "--out", str(out), "--format", "json"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    terminal = proc.stdout + proc.stderr
    # stdout is the json a script asked for, nothing else
    assert json.loads(proc.stdout)["rows"][0]["variant"] == "default" and out.exists()
    for tag in ("C-LEVEL", "PY PRINT", "PY STDERR", "DEP WARNING", "DEP LOG"):
        assert tag not in terminal, tag
    log = tmp_path / "o" / "r.log.txt"
    assert "C-LEVEL STDOUT" in log.read_text() and "DEP WARNING" in log.read_text()
    assert str(log) in proc.stderr and str(log) not in proc.stdout  # stdout stays the table (or json)


def test_phase_line_takes_any_text_and_ends_with_the_block(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("ACCELKIT_CACHE", str(tmp_path / "cache"))
    with quiet(tmp_path / "log.txt") as q:
        q.phase("building [/]oops+onnx")  # a variant name is not markup
        q.phase("measuring quality on held-out data")
        q.echo("done")
    assert q._status is None and "done" in capfd.readouterr().out


def test_a_dependency_logger_with_its_own_handler_is_captured_and_restored(tmp_path, monkeypatch):
    import io

    monkeypatch.setenv("ACCELKIT_CACHE", str(tmp_path / "cache"))
    console = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")  # a stderr bound before quiet() began
    dep = logging.getLogger("somedep_lib")
    handler = logging.StreamHandler(console)
    dep.addHandler(handler)
    dep.propagate = False  # as transformers does: the root logger never sees its records
    try:
        with quiet(tmp_path / "log.txt"):
            dep.warning("DEP OWN HANDLER")
            late = logging.StreamHandler()  # made inside: bound to the captured sys.stderr
        assert handler.stream is console
        late.emit(logging.makeLogRecord({"msg": "after the block"}))  # must not hit the closed log
    finally:
        dep.removeHandler(handler)
    assert "DEP OWN HANDLER" in (tmp_path / "log.txt").read_text()
    console.flush()
    assert b"DEP OWN HANDLER" not in console.buffer.getvalue()


def test_a_handler_that_manages_its_own_stream_is_never_handed_the_log(tmp_path, monkeypatch):
    # torch's structured-trace handler starts with stream None, opens its own file and closes it
    # again; handed the log, it closed the log mid-run and every later line raised
    class OwnStream(logging.StreamHandler):
        def emit(self, record):
            if self.stream is not None:
                self.stream.close()
                self.stream = None

    monkeypatch.setenv("ACCELKIT_CACHE", str(tmp_path))
    lg = logging.getLogger("somedep.trace")
    h = OwnStream()
    h.stream = None
    lg.addHandler(h)
    try:
        with quiet(tmp_path / "log.txt") as q:
            lg.warning("trace event")
            assert h.stream is None
            logging.getLogger("otherdep").warning("still logged after the trace handler ran")
            q.log("and our own log lines too")
    finally:
        lg.removeHandler(h)
    assert "still logged" in (tmp_path / "log.txt").read_text()


def test_a_handler_whose_stream_follows_stderr_is_left_alone(tmp_path, monkeypatch):
    # logging's last-resort kind (some libraries install one): ``stream`` is a read-only property
    # returning sys.stderr; setting it raised AttributeError and every command failed to start
    class FollowsStderr(logging.StreamHandler):
        def __init__(self):
            logging.Handler.__init__(self)

        @property
        def stream(self):
            return sys.stderr

    monkeypatch.setenv("ACCELKIT_CACHE", str(tmp_path))
    lg = logging.getLogger("somedep.laststderr")
    lg.addHandler(FollowsStderr())
    lg.propagate = False
    try:
        with quiet(tmp_path / "log.txt"):
            lg.warning("DEP THROUGH STDERR")
    finally:
        lg.handlers.clear()
    assert "DEP THROUGH STDERR" in (tmp_path / "log.txt").read_text()  # stderr was the log inside the block


def test_a_dependency_handler_left_on_a_closed_stream_does_not_break_quiet(tmp_path, monkeypatch):
    # `datasets` adds a handler on the stderr of its import; under pytest that is a capture file
    # closed when the test ends, and every later quiet block failed flushing it
    import io

    monkeypatch.setenv("ACCELKIT_CACHE", str(tmp_path))
    lg = logging.getLogger("somedep.closed")
    closed = io.StringIO()
    h = logging.StreamHandler(closed)
    closed.close()
    lg.addHandler(h)
    try:
        with quiet(tmp_path / "log.txt"):
            lg.warning("logged into the log, not the closed stream")
        assert h.stream is closed  # handed back as it was
    finally:
        lg.removeHandler(h)
    assert "not the closed stream" in (tmp_path / "log.txt").read_text()
