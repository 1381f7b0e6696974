"""Experiment (issue 24): does verifying prompt-lookup drafts pay at batch 8? ``openvino-generate``'s
loop (row -1) against ``openvino-prompt-lookup`` with 0, 1, 2 or 3 drafts a row per call
(``batch_draft_tokens``; 0 is the all-logits graph running the plain loop), each with an n-gram store
of the workload's 64 calibration prompts, over generate_llama.py's 64 held-out prompts, 64 new
tokens, in interleaved rounds (the order reversed every other round, the first round not counted).

    ACCELKIT_CACHE=<generate_llama's models> HF_HUB_OFFLINE=1 PYTHONPATH=src \\
        .venv/bin/python benchmarks/explore/prompt_lookup_batch.py [--rows -1,0,2] [--batch 8] [--rounds 6]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import generate_llama  # noqa: E402

from accelkit.techniques.openvino_generate import openvino_generator  # noqa: E402
from accelkit.techniques.openvino_prompt_lookup import PromptLookupConfig, openvino_prompt_lookup  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default="-1,0,2", help="drafts a row per call; -1: openvino-generate")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(2)
    _, wl = generate_llama.heldout_workload(Path(tempfile.mkdtemp()))
    model = wl.build_model()
    settings = wl.default_settings(args.batch, "cpu")
    calib = [b for b, _ in wl.batches(list(wl.calib_data()), settings)]
    held = [b for b, _ in wl.batches(list(wl.eval_data()), settings)]
    rows = [int(x) for x in args.rows.split(",")]
    runners = {k: openvino_generator(model) if k < 0 else
               openvino_prompt_lookup(model, PromptLookupConfig(batch_draft_tokens=k), calib, 64) for k in rows}
    times: dict[int, list[float]] = {k: [] for k in rows}
    with torch.inference_mode():
        for rnd in range(args.rounds):
            for k in rows if rnd % 2 else rows[::-1]:
                start = time.perf_counter()
                for b in held:
                    runners[k].generate(**b, max_new_tokens=64, pad_token_id=0, eos_token_id=None)
                times[k].append(time.perf_counter() - start)
    tokens = 64 * sum(b["input_ids"].shape[0] for b in held)
    for k in rows:
        pairs = [a / b for a, b in zip(times[rows[0]][1:], times[k][1:], strict=True)]
        name = "openvino-generate" if k < 0 else f"prompt lookup, {k} drafts a row"
        print(f"{name:32s} {tokens / statistics.median(times[k][1:]):7.1f} tokens/s  "
              f"{statistics.median(pairs):.3f}x the first row (pairs {min(pairs):.2f}-{max(pairs):.2f})")


if __name__ == "__main__":
    main()
