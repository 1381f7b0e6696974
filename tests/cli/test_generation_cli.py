"""`accelkit bench --model FOLDER --task text-generation`: bad input is one line and exit 2,
before anything is measured; a tiny run prints tokens/s beside the default run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import model_folders as mf  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _accelkit(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO / "src"),
           "ACCELKIT_CACHE": str(cwd / "cache")}
    return subprocess.run([sys.executable, "-m", "accelkit", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("gencli")
    mf.llama_folder(root)
    mf.llama_folder(root, "tiny-draft", layers=1, hidden=32, seed=6)
    mf.gpt2_folder(root)  # another tokenizer
    mf.bert_classifier_folder(root)
    mf.prompts_file(root, 12)
    (root / "empty.txt").write_text("")
    return root


@pytest.mark.parametrize("extra, message", [
    (["--max-new-tokens", "0"], "--max-new-tokens 0: expected a positive number"),
    (["--max-new-tokens", "-3"], "--max-new-tokens -3: expected a positive number"),
    (["--data", "empty.txt"], "has no items"),
    (["--model", "tiny-cls"], "is not a causal language model"),
    (["--draft", "tiny-gpt2"], "--draft tiny-gpt2: its tokenizer differs"),
])
def test_bad_generation_input_is_one_line_and_exit_2(root, extra, message):
    args = ["bench", "--model", "tiny-llama", "--data", "prompts.txt", "--task", "text-generation", *extra]
    # a later --model/--data replaces the earlier one (click keeps the last)
    proc = _accelkit(args, root)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], proc.stderr[-2000:]


def test_max_new_tokens_needs_the_generation_task(root):
    proc = _accelkit(["bench", "--model", "tiny-llama", "--data", "prompts.txt", "--max-new-tokens", "4"], root)
    assert proc.returncode == 2 and "go with --task text-generation" in proc.stderr


@pytest.mark.slow
def test_a_tiny_generation_bench_prints_tokens_per_second(root):
    proc = _accelkit(["bench", "--model", "tiny-llama", "--data", "prompts.txt", "--task", "text-generation",
                      "--max-new-tokens", "3", "--draft", "tiny-draft", "--variants", "speculative", "--repeats",
                      "1", "--out", "r.json"], root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "speculative" in proc.stdout
    found = {v["name"]: v for v in json.loads((root / "r.json").read_text())["variants"]}
    assert found["speculative"]["throughput_unit"] == "tokens/s" and found["speculative"]["error"] is None
    assert found["speculative"]["quality"]["greedy_agreement"] == 1.0


def test_generation_options_need_a_model(root):
    proc = _accelkit(["bench", "--max-new-tokens", "4"], root)
    assert proc.returncode == 2 and "go with --model" in proc.stderr


@pytest.mark.slow
def test_export_a_bf16_cast_generation_plan_that_ships_self_contained(root):
    proc = _accelkit(["export", "--model", "tiny-llama", "--data", "prompts.txt", "--task", "text-generation",
                      "--max-new-tokens", "4", "--variant", "bf16-cast", "--out", "E"], root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((root / "E" / "plan.json").read_text())
    assert meta["format"] == "hf-torch" and meta["pipeline"]["task"] == "text-generation"
    assert meta["pipeline"]["max_new_tokens"] == 4 and meta["cast_inputs"] == "bfloat16"
