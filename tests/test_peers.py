"""accelkit.peers: the peers a user could pick instead, timed beside accelkit; a missing or
failing peer is a row with its reason, never a crash."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import accelkit.peers as peers
from accelkit.errors import ConfigError
from accelkit.report.results import Results, VariantResult

sys.path.insert(0, str(Path(__file__).resolve().parent))
import model_folders as mf  # noqa: E402

SENTS = [f"sentence number {i} about nothing in particular" for i in range(24)]
EMB = np.random.default_rng(0).normal(size=(len(SENTS), 16)).astype(np.float32)


def _exact(_b=None):
    return lambda s: EMB[: len(s)].copy()


def _noisy(scale):
    noise = np.random.default_rng(1).normal(size=EMB.shape).astype(np.float32) * scale
    return lambda _b=None: (lambda s: EMB[: len(s)] + noise[: len(s)])


def _missing(_b):
    raise ImportError("No module named 'sentence_transformers'")


def _broken(_b):
    raise RuntimeError("export failed\nsecond line")


def test_rows_are_timed_scored_against_the_reference_and_failures_are_rows(monkeypatch):
    monkeypatch.setattr(peers, "PEERS", {"st-fp32": ("reference", _exact), "fast-but-wrong": ("x", _noisy(2.0)),
                                         "close": ("y", _noisy(0.01)), "gone": ("z", _missing),
                                         "broken": ("w", _broken)})
    table = peers.measure_peers("unused", SENTS, accelkit={"accelkit plan": ("ours", _exact())}, repeats=2)
    rows = {r["name"]: r for r in table["rows"]}
    assert table["reference"] == "st-fp32" and rows["st-fp32"]["cosine_mean"] == pytest.approx(1.0)
    assert rows["fast-but-wrong"]["cosine_mean"] < 0.99 and rows["close"]["cosine_mean"] > 0.99
    assert table["best_peer"] in ("st-fp32", "close")  # never the one that loses quality
    assert "not installed" in rows["gone"]["error"] and "[peers]" in rows["gone"]["error"]
    assert rows["broken"]["error"] == "RuntimeError: export failed"  # one line
    ours = rows["accelkit plan"]
    assert ours["kind"] == "accelkit" and ours["ratio"] > 0 and ours["cosine_min"] == pytest.approx(1.0)
    best = rows[table["best_peer"]]
    assert ours["vs_best_peer"] == pytest.approx(ours["ratio"] / best["ratio"], rel=1e-3)
    json.dumps(table)  # JSON-able as it stands: it goes into results.json


def test_without_sentence_transformers_the_reference_is_accelkits_default(monkeypatch):
    monkeypatch.setattr(peers, "PEERS", {"st-fp32": ("reference", _missing)})
    table = peers.measure_peers("unused", SENTS, accelkit={"accelkit-default": ("fp32", _exact()),
                                                           "accelkit int8": ("int8", _noisy(0.01)())}, repeats=1)
    rows = {r["name"]: r for r in table["rows"]}
    assert table["reference"] == "accelkit-default" and rows["accelkit-default"]["ratio"] == 1.0
    assert table["best_peer"] is None and "vs_best_peer" not in rows["accelkit int8"]
    assert "error" in rows["st-fp32"]


def test_bad_peer_names_and_no_sentences_raise():
    from accelkit.errors import UnknownVariantError

    with pytest.raises(UnknownVariantError, match="no-such-peer"):
        peers.measure_peers("unused", SENTS, peers=["no-such-peer"])
    with pytest.raises(ConfigError, match="at least one sentence"):
        peers.measure_peers("unused", [])


def test_a_workload_without_a_sentence_transformers_folder_is_refused():
    from accelkit.workloads import get_workload

    assert peers.check_peer_workload(get_workload("minilm")).is_dir()
    with pytest.raises(ConfigError, match="not a sentence-transformers model"):
        peers.check_peer_workload(get_workload("digits"))


def test_the_peer_table_survives_the_results_file_and_a_hostile_one_renders_escaped():
    from accelkit.report.html import render_html

    table = {"reference": "st-fp32", "best_peer": "st-fp32", "sentences": 3, "rows": [
        {"name": "st-fp32", "kind": "peer", "what": "ref", "ratio": 1.0, "sentences_per_s": 10.0,
         "cosine_mean": 1.0, "cosine_min": 1.0},
        {"name": "<script>x</script>", "kind": "accelkit", "ratio": "fast", "cosine_mean": None, "vs_best_peer": "2"},
        {"name": "gone", "kind": "peer", "error": "not installed <b>"}]}
    res = Results("minilm", "infer", "default", [VariantResult("default", speedup=1.0)], peers=table)
    back = Results.from_dict(json.loads(json.dumps(res.to_dict())))
    assert back.peers == table
    page = render_html(back)
    assert "Against what you could pick instead" in page and "<script>x" not in page and "&lt;script&gt;" in page
    assert "not installed &lt;b&gt;" in page


def _cli(args, cwd):
    import os
    import subprocess

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "ACCELKIT_CACHE": str(cwd / "cache")}
    return subprocess.run([sys.executable, "-m", "accelkit", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def test_bench_peers_puts_the_table_in_the_results_report_and_terminal(tmp_path):
    folder, text = mf.sentence_transformers_folder(tmp_path), mf.text_file(tmp_path, 80)
    proc = _cli(["bench", "--model", str(folder), "--data", str(text), "--variants", "bf16-cast", "--repeats", "1",
                 "--peers", "--out", "r.json", "--html", "r.html"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = json.loads((tmp_path / "r.json").read_text())["peers"]
    rows = {r["name"]: r for r in table["rows"]}
    has_st = importlib.util.find_spec("sentence_transformers") is not None
    assert table["reference"] == ("st-fp32" if has_st else "accelkit-default")
    # accelkit's default is how SentenceTransformer.encode runs the folder: the same embeddings
    assert rows["accelkit-default"]["cosine_min"] > 0.9999
    for name in ("st-onnx", "st-openvino", "st-openvino-int8"):  # not in `make test`'s venv, or built
        if importlib.util.find_spec("optimum") is None:
            assert "error" in rows[name]
    assert rows["accelkit bf16-cast"]["cosine_mean"] > 0.99 and rows["accelkit bf16-cast"]["ratio"] > 0
    assert table["sentences"] == 40  # the held-out half of the 80 lines
    assert "Against what you could pick instead" in (tmp_path / "r.html").read_text()
    assert "peers" in proc.stdout and "accelkit bf16-cast" in proc.stdout


@pytest.mark.parametrize("args, match", [
    (["bench", "-w", "digits", "--peers"], "not a sentence-transformers model"),
    (["bench", "--task", "train", "--peers"], "--peers measures inference"),
])
def test_peers_on_a_workload_it_cannot_compare_is_one_line_exit_2(tmp_path, args, match):
    proc = _cli(args, tmp_path)
    assert proc.returncode == 2 and match in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_accelkits_row_is_chosen_by_benchs_verdict_or_the_same_judge_on_the_peers_budget():
    from accelkit.verdict import Verdict

    floor = Verdict(False, ("cosine_min 0.9 < 0.97",), "below the quality floor: cosine_min 0.9 < 0.97", "floor")
    judged = Results("minilm", "infer", "default", [], max_quality_drop=0.01, min_quality={"cosine_min": 0.97})
    missed = VariantResult("v", quality={"cosine_min": 0.9}, quality_drop=0.001, verdict=floor)
    assert not peers._keeps(missed, 0.01, judged)  # bench judged this budget: its verdict decides
    unbudgeted = Results("minilm", "infer", "default", [])  # bench had no budget: judged on the peers' 0.01
    assert peers._keeps(VariantResult("v", quality_drop=0.005, verdict=Verdict(True)), 0.01, unbudgeted)
    assert not peers._keeps(VariantResult("v", quality_drop=0.05, verdict=Verdict(True)), 0.01, unbudgeted)


def test_every_row_runs_at_the_same_threads_and_batch_and_own_best_rows_are_labelled(monkeypatch):
    calls: dict[str, list[int | None]] = {}

    def recording(name, scale=0.0):
        noise = np.random.default_rng(2).normal(size=EMB.shape).astype(np.float32) * scale

        def make(b=None):
            def encode(s, batch_size=None):
                calls.setdefault(name, []).append(batch_size or (b.batch_size if b else 8))
                return EMB[: len(s)] + noise[: len(s)]

            return encode

        return make

    monkeypatch.setattr(peers, "PEERS", {"st-fp32": ("reference", recording("st-fp32")),
                                         "close": ("y", recording("close", 0.01))})
    fixed = _exact()  # takes no batch_size: it can only run at the shared batch
    table = peers.measure_peers("unused", SENTS, accelkit={"ours": ("ours", recording("ours")(None)),
                                                           "fixed": ("fixed", fixed)},
                                threads=2, batch_size=8, repeats=2, own_batch_sizes=(4, 8, 16))
    rows = {r["name"]: r for r in table["rows"]}
    parity = [r for r in rows.values() if r["batch_rule"] == "parity"]
    # the parity rule: every parity row states the table's thread count and batch size, and ran at them
    assert {(r["threads"], r["batch_size"]) for r in parity} == {(table["threads"], table["batch_size"])} == {(2, 8)}
    assert len(parity) == 4 and all("ratio" in r for r in parity)
    own = {n: r for n, r in rows.items() if r["batch_rule"] == "own best"}
    assert set(own) == {"st-fp32 @ own batch", "close @ own batch", "ours @ own batch", "fixed @ own batch"}
    for name in ("st-fp32", "close", "ours"):
        r = own[f"{name} @ own batch"]
        assert r["threads"] == 2 and r["batch_size"] in (4, 8, 16) and set(r["probe_s"]) == {"4", "8", "16"}
        assert r["ratio"] > 0 and r["cosine_mean"] == pytest.approx(rows[name]["cosine_mean"])
        assert r["batch_size"] in calls[name]  # timed at its own best size
    assert "fixed batch size" in own["fixed @ own batch"]["error"]
    assert table["best_peer_own_batch"] in ("st-fp32 @ own batch", "close @ own batch")
    best_own = rows[table["best_peer_own_batch"]]
    assert own["ours @ own batch"]["vs_best_peer"] == pytest.approx(
        own["ours @ own batch"]["ratio"] / best_own["ratio"], rel=1e-3)
    json.dumps(table)
