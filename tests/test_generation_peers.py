"""bench --peers on text-generation: HF generate's own fast paths (static cache + torch.compile, bf16,
optimum-intel OpenVINO) timed beside accelkit's rows on a tiny random Llama, scored by greedy
agreement with generate's fp32 tokens; a peer that is missing or skipped is a row saying why."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import accelkit.peers as peers
from accelkit.errors import ConfigError, UnknownVariantError
from accelkit.workloads import workload_from_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
import model_folders as mf  # noqa: E402


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    root = tmp_path_factory.mktemp("genpeers")
    return workload_from_model(mf.llama_folder(root), mf.prompts_file(root, 8), task="text-generation",
                               max_new_tokens=4)


def test_rows_are_timed_and_scored_and_missing_peers_say_why(llama, monkeypatch):
    from accelkit.techniques.static_cache import StaticCacheConfig, StaticCacheGenerator

    def missing(b):
        raise ImportError("No module named 'optimum'")

    monkeypatch.setitem(peers.GENERATION_PEERS, "ov-causal-lm", ("OpenVINO", missing))
    monkeypatch.setattr(peers, "_native_bf16_missing", lambda: "skipped: this CPU has no native bf16")
    settings = llama.default_settings(2)
    lean = StaticCacheGenerator(llama.build_model(), StaticCacheConfig(compile=False))
    rows = {"accelkit lean": ("the lean loop", lambda p: llama.predict(lean, list(p), settings))}
    table = peers.measure_generation_peers(llama, settings, llama.eval_data(), accelkit=rows, repeats=2,
                                           peers=["hf-generate", "hf-static-compile-bf16", "ov-causal-lm"])
    by = {r["name"]: r for r in table["rows"]}
    assert table["reference"] == "hf-generate" and table["prompts"] == 4 and table["max_new_tokens"] == 4
    assert by["hf-generate"]["greedy_agreement"] == 1.0 and by["hf-generate"]["ratio"] == 1.0
    # the lean loop writes generate's own tokens: agreement exactly 1, and it is measured against the best peer
    assert by["accelkit lean"]["greedy_agreement"] == 1.0 and by["accelkit lean"]["tokens_per_s"] > 0
    assert table["best_peer"] == "hf-generate" and "vs_best_peer" in by["accelkit lean"]
    assert by["hf-static-compile-bf16"]["error"].startswith("skipped: this CPU has no native bf16")
    assert by["ov-causal-lm"]["error"].startswith("not installed")


def test_the_table_prints_and_renders_with_its_own_columns(llama, monkeypatch):
    from rich.console import Console

    from accelkit.report.html import _peers_html
    from accelkit.report.table import print_peers

    table = peers.measure_generation_peers(llama, llama.default_settings(4), llama.eval_data(), repeats=1,
                                           peers=["hf-generate"])
    table["rows"].append({"name": "ov-causal-lm", "kind": "peer", "what": "OpenVINO", "error": "not installed"})
    console = Console(record=True, width=120)
    print_peers(json.loads(json.dumps(table)), console)
    text = console.export_text()
    assert "tokens/s" in text and "agreement" in text and "4 prompts × 4 new tokens" in text
    assert "greedy agreement ≥ 0.98: hf-generate at 1.00×" in text and "not installed" in text
    page = _peers_html(table)
    assert "tokens/s" in page and "4 prompts × 4 new tokens" in page and "cosine" not in page


def test_bad_peer_names_and_no_prompts_raise(llama):
    with pytest.raises(UnknownVariantError, match="not known"):
        peers.measure_generation_peers(llama, llama.default_settings(), ["a"], peers=["st-fp32"])
    with pytest.raises(ConfigError, match="at least one prompt"):
        peers.measure_generation_peers(llama, llama.default_settings(), [])
    assert peers.peers_for(llama) == "generation"


@pytest.mark.slow
def test_bench_peers_on_text_generation_through_the_cli(tmp_path):
    """HF's static cache + torch.compile row builds and keeps greedy agreement; accelkit's compiled
    static-cache row is timed beside it (compiles: tens of seconds)."""
    import os
    import subprocess

    folder, prompts = mf.llama_folder(tmp_path), mf.prompts_file(tmp_path, 8)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "ACCELKIT_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "accelkit", "bench", "--model", str(folder), "--data", str(prompts),
                           "--task", "text-generation", "--max-new-tokens", "4", "--variants", "static-cache-compile",
                           "--repeats", "1", "--batch-size", "2", "--peers", "--out", "r.json"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = json.loads((tmp_path / "r.json").read_text())["peers"]
    rows = {r["name"]: r for r in table["rows"]}
    assert rows["hf-static-compile"]["greedy_agreement"] >= 0.98, rows["hf-static-compile"]
    assert rows["accelkit static-cache-compile"]["greedy_agreement"] == 1.0
    assert "error" in rows["hf-static-compile-bf16"] or rows["hf-static-compile-bf16"]["tokens_per_s"] > 0


def test_transformers_prompt_lookup_is_a_batch_1_peer_that_keeps_generates_tokens(llama):
    table = peers.measure_generation_peers(llama, llama.default_settings(1), llama.eval_data(), repeats=1,
                                           peers=["hf-generate", "hf-prompt-lookup"])
    by = {r["name"]: r for r in table["rows"]}
    assert by["hf-prompt-lookup"]["greedy_agreement"] == 1.0 and by["hf-prompt-lookup"]["tokens_per_s"] > 0
    table = peers.measure_generation_peers(llama, llama.default_settings(2), llama.eval_data(), repeats=1,
                                           peers=["hf-generate", "hf-prompt-lookup"])
    by = {r["name"]: r for r in table["rows"]}
    assert by["hf-prompt-lookup"]["error"].startswith("skipped: transformers' prompt lookup")


def test_a_row_at_its_plans_own_batch_is_judged_against_the_peers_at_theirs(llama):
    """A throughput plan that chose a larger batch (prompt-batching) is compared with each peer
    at the size it writes fastest at, not with peers held at the user's batch; a peer that runs
    at none of the sizes gets a row saying so."""
    settings = llama.default_settings(1)
    model = llama.build_model()
    wide = settings.with_(batch_size=4)
    rows = {"accelkit wide": ("four prompts a call", lambda p: llama.predict(model, list(p), wide), 4)}
    table = peers.measure_generation_peers(llama, settings, llama.eval_data(), accelkit=rows, repeats=2,
                                           peers=["hf-generate", "hf-prompt-lookup"], own_batch_sizes=(2, 4))
    by = {r["name"]: r for r in table["rows"]}
    assert by["accelkit wide"]["batch_rule"] == "own best" and by["accelkit wide"]["batch_size"] == 4
    own = by["hf-generate @ own batch"]
    assert own["batch_rule"] == "own best" and own["batch_size"] in (2, 4) and set(own["probe_s"]) == {"2", "4"}
    assert own["greedy_agreement"] == 1.0 and own["ratio"] > 0
    assert table["best_peer_own_batch"] == "hf-generate @ own batch"
    # judged against the own-best peer, not the batch-1 one, pair by pair in the same rounds
    assert table["rows"] == list(by.values()) and "accelkit wide (own-batch rounds)" not in by
    assert 0 < by["accelkit wide"]["vs_best_peer"] != round(by["accelkit wide"]["ratio"] / by["hf-generate"]["ratio"], 4)
    assert by["hf-prompt-lookup @ own batch"]["error"] == "ran at none of the batch sizes [2, 4]"
    assert by["hf-generate"]["batch_rule"] == "parity" and by["hf-generate"]["batch_size"] == 1


def test_own_batch_candidates_double_within_the_largest_and_the_items():
    assert peers.own_batch_candidates(8, 64, 64) == [8, 16, 32, 64]
    assert peers.own_batch_candidates(8, 64, 20) == [8, 16]
    assert peers.own_batch_candidates(8, 4, 64) == [8]
