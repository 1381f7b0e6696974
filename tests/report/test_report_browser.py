"""report.html in a real headless browser: it renders, logs no console error, fetches nothing.

Uses the Debian package ``chromium`` when installed (``apt-get install chromium``); skips
otherwise. Network requests are read from Chromium's net log, with the browser's own background
traffic (updates, sync, spelling dictionaries) switched off by flags, so any URL left there other
than the report's own ``file://`` came from the page.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from accelkit.report.html import write_html_report

sys.path.insert(0, str(Path(__file__).parent))
from sample_results import sample_results, sample_summary  # noqa: E402

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
                 if p and Path(p).exists()), None)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (apt-get install chromium)")

_QUIET_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run", "--no-default-browser-check",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-default-apps",
    "--disable-extensions", "--disable-features=Translate,OptimizationHints,MediaRouter,SpellCheck,NetworkTimeServiceQuerying",
    "--disable-client-side-phishing-detection", "--disable-domain-reliability", "--no-pings", "--metrics-recording-only", "--enable-logging=stderr", "--v=0",
]


def _chromium(tmp_path: Path, page: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [CHROMIUM, *_QUIET_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *extra, page.as_uri()]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


# Debian's chromium still polls its updater and sign-in service whatever the flags say; those hosts
# are the browser's, never a report's (the report's own test below proves a page request is seen)
_BROWSER_HOSTS = ("google.com", "googleapis.com", "gvt1.com", "gstatic.com")


def _page_urls(net_log: Path) -> set[str]:
    """Every URL the network stack was asked for, less the browser's own background traffic."""
    urls = set(re.findall(r'"url":"([^"]+)"', net_log.read_text(errors="replace")))
    hosts = {u: (re.match(r"[a-z]+://([^/:?]+)", u) or [None, ""])[1] for u in urls}
    return {u for u in urls if not any(hosts[u] == h or hosts[u].endswith("." + h) for h in _BROWSER_HOSTS)}


def test_report_renders_without_console_errors_or_network(tmp_path):
    page = tmp_path / "report.html"
    write_html_report([sample_results()], page, summaries=[sample_summary()])
    shot, net = tmp_path / "shot.png", tmp_path / "net.json"
    proc = _chromium(tmp_path, page, "--window-size=1280,1400", f"--screenshot={shot}", f"--log-net-log={net}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 10_000  # a real picture, not a blank page
    # console messages from the page (a CSP violation, a script error) are logged as CONSOLE lines
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console
    foreign = {u for u in _page_urls(net) if not u.startswith(("file:", "data:", "about:", "chrome:"))}
    assert not foreign, foreign


def test_the_network_check_sees_a_page_request(tmp_path):
    """Control: a page that does load something from the network is caught by the same check."""
    page = tmp_path / "leaky.html"
    page.write_text("<!doctype html><html><body><img src='http://127.0.0.1:9/pixel.png'></body></html>")
    net = tmp_path / "net.json"
    proc = _chromium(tmp_path, page, "--dump-dom", f"--log-net-log={net}")
    assert proc.returncode == 0
    assert "http://127.0.0.1:9/pixel.png" in _page_urls(net)


def test_report_dom_shows_the_card_plot_and_legend(tmp_path):
    page = tmp_path / "report.html"
    write_html_report([sample_results()], page, summaries=[sample_summary()])
    proc = _chromium(tmp_path, page, "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert 'class="card"' in dom and "2.70×" in dom and 'accelkit.load("out/minilm/model")' in dom
    assert "<svg" in dom and 'class="legend"' in dom
    assert "1.18e+03" not in dom and "e+0" not in dom  # human numbers only


def test_hostile_values_run_nothing_in_the_browser(tmp_path):
    """A results file that carries markup everywhere renders it as text: no <img> element appears."""
    res = sample_results()
    evil = "<img src=x onerror=alert(1)>"
    res.primary_metric = evil
    res.settings = {"batch_size": evil}
    res.variants[1].throughput_unit = evil
    res.variants[1].error = evil
    page = tmp_path / "report.html"
    write_html_report([res], page)
    proc = _chromium(tmp_path, page, "--dump-dom")
    assert proc.returncode == 0
    assert "<img" not in proc.stdout and "&lt;img" in proc.stdout
