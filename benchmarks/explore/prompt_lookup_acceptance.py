"""Experiment (issue 24): would prompt-lookup speculation (drafts copied from the row's own earlier
n-grams, no draft model) pay at batch 8 on generate_llama.py's trained Llama? Greedy-decodes the 64
held-out prompts once (64 new tokens, batch 1, eager), then replays each row: at every step, the
tokens after the latest earlier match of the last n <= ``--ngram`` tokens are the draft, and a
step emits the accepted prefix plus one token. Reports tokens a step, and at batch 8 the steps the
slowest row of each group needs (a static batch ends with its slowest row). No timing: compare
with the k-token call costs of ``ov_multi_token_step.py``. ``--store-prompts N`` also greedy-decodes
N other pydoc prompts (none of them held out) and replays ``accelkit.runtimes.prompt_lookup.best_draft``:
the row's own lookup or the n-gram store of those continuations, whichever matches more.

    ACCELKIT_CACHE=<generate_llama's models> HF_HUB_OFFLINE=1 PYTHONPATH=src \\
        .venv/bin/python benchmarks/explore/prompt_lookup_acceptance.py [--ngram 3] [--drafts 2,4,8] [--store-prompts 64]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from accelkit.runtimes.prompt_lookup import NgramStore, best_draft

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import generate_llama  # noqa: E402


def lookup_draft(context: list[int], k: int, ngram: int) -> list[int]:
    """The k tokens after the latest earlier occurrence of the context's last n tokens, longest n first."""
    for n in range(ngram, 0, -1):
        if len(context) <= n:
            continue
        tail = context[-n:]
        for start in range(len(context) - n - 1, -1, -1):
            if context[start:start + n] == tail:
                return context[start + n:start + n + k]
    return []


def steps_for(prompt: list[int], generated: list[int], k: int, ngram: int, store=None) -> int:
    """Verify calls greedy prompt-lookup speculation takes to write ``generated`` after ``prompt``
    (drafting with ``best_draft`` and ``store`` when one is given)."""
    done = steps = 0
    while done < len(generated):
        if store is None:
            draft = lookup_draft(prompt + generated[:done], k, ngram)
        else:
            draft = best_draft(np.asarray(prompt + generated[:done], dtype=np.int64), k, ngram, store).tolist()
        accepted = 0
        while accepted < len(draft) and done + accepted < len(generated) and draft[accepted] == generated[done + accepted]:
            accepted += 1
        done, steps = done + accepted + 1, steps + 1
    return steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ngram", type=int, default=3, help="longest n-gram matched")
    parser.add_argument("--drafts", default="2,4,8", help="draft lengths k")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--store-prompts", type=int, default=0, help="calibration prompts for an n-gram store")
    args = parser.parse_args()
    torch.set_num_threads(2)
    target, _ = generate_llama.models(False, 6.0)  # as generate_llama.py --train-minutes 6 keys it
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(target)
    model = AutoModelForCausalLM.from_pretrained(target).eval()
    with tempfile.TemporaryDirectory() as tmp:
        lines = generate_llama.prompts_file(64 + (args.store_prompts + 1) // 2, 8, Path(tmp)).read_text(
            encoding="utf-8").splitlines()
    held, calib = lines[64:128], lines[128:128 + args.store_prompts]

    def greedy(texts: list[str]) -> list[tuple[list[int], list[int]]]:
        rows = []
        with torch.inference_mode():
            for text in texts:
                ids = tokenizer(text, return_tensors="pt").input_ids
                out = model.generate(ids, max_new_tokens=args.new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.eos_token_id)
                rows.append((ids[0].tolist(), out[0, ids.shape[1]:].tolist()))
        return rows

    rows = greedy(held)
    stores = {"own text": None}
    if calib:
        stores[f"own text or a store of {len(calib)} prompts"] = NgramStore.from_sequences(
            [p + g for p, g in greedy(calib)], args.ngram, 16)
    print(f"{len(rows)} held-out prompts, {args.new_tokens} greedy tokens each; n-grams up to {args.ngram}")
    for k in (int(x) for x in args.drafts.split(",")):
        for name, store in stores.items():
            steps = [steps_for(p, g, k, args.ngram, store) for p, g in rows]
            tokens = sum(len(g) for _, g in rows)
            groups = [max(steps[i:i + args.batch]) for i in range(0, len(steps), args.batch)]
            print(f"k {k}, {name}: {tokens / sum(steps):.2f} tokens a step (batch 1); batch {args.batch}: "
                  f"{sum(groups) / len(groups):.1f} calls for {args.new_tokens} tokens "
                  f"({args.new_tokens * len(groups) / sum(groups):.2f} tokens a call)")


if __name__ == "__main__":
    main()
