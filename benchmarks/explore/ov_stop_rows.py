"""Experiment (issue 24): what finished rows cost when a batch of prompts stops at a token. One
batch of the 64 held-out prompts on generate_llama.py's trained Llama, greedy, stopping at
``--stop`` (". " ends a sentence: rows end after a few tokens or after many). ``generate`` and
optimum-intel's ``OVModelForCausalLM`` step every row until the last one ends; accelkit's
``openvino-generate`` drops a row from the batch once it wrote the stop token. Each row is timed
also without the stop (every row writes ``--new-tokens``), in the same interleaved rounds.

    ACCELKIT_CACHE=~/.cache/accelkit HF_HUB_OFFLINE=1 PYTHONPATH=src \\
        .venv-peers/bin/python benchmarks/explore/ov_stop_rows.py [--stop .] [--new-tokens 64] [--rounds 5]

Prints tokens/s counting each row's tokens up to and including its stop, the median of pair
ratios against the optimum-intel row, and whether each row wrote ``generate``'s tokens.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import generate_llama  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stop", default=".")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--peer-batches", default="8,16,32", help="the optimum-intel row also at these batch "
                        "sizes (chunks of the prompts in order), so it is also timed at its own best")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    from optimum.intel import OVModelForCausalLM
    from transformers import AutoTokenizer

    from accelkit.techniques.openvino_generate import openvino_generator

    target, wl = generate_llama.heldout_workload(Path(tempfile.mkdtemp()), args.new_tokens)
    tok = AutoTokenizer.from_pretrained(target)
    tok.padding_side, tok.pad_token = "left", tok.pad_token or tok.eos_token
    stop = tok.encode(args.stop, add_special_tokens=False)[-1]
    prompts = list(wl.eval_data())
    batches = sorted({len(prompts), *(int(b) for b in args.peer_batches.split(",") if b)})
    chunks = {b: [tok(prompts[i:i + b], return_tensors="pt", padding=True, return_token_type_ids=False)
                  for i in range(0, len(prompts), b)] for b in batches}
    model = wl.build_model()
    rows = {"generate": model,
            "ov-causal-lm-f32": OVModelForCausalLM.from_pretrained(
                str(target), export=True, compile=True, ov_config={"INFERENCE_PRECISION_HINT": "f32"}),
            "accelkit openvino-generate": openvino_generator(model)}

    def write(name: str, eos: int | None, batch: int = len(prompts)) -> torch.Tensor:
        parts = []
        with torch.inference_mode():
            for enc in chunks[batch]:
                out = rows[name].generate(**enc, max_new_tokens=args.new_tokens, do_sample=False, num_beams=1,
                                          pad_token_id=tok.pad_token_id, eos_token_id=eos)
                parts.append(out[:, enc["input_ids"].shape[1]:])
        width = max(p.shape[1] for p in parts)
        return torch.cat([torch.nn.functional.pad(p, (0, width - p.shape[1]), value=tok.pad_token_id)
                          for p in parts])

    def real_tokens(new: torch.Tensor, eos: int | None) -> int:
        if eos is None:
            return new.numel()
        ended = (new == eos).int().cumsum(1)
        return int(((ended == 0) | ((ended == 1) & (new == eos))).sum())

    reference = {eos: write("generate", eos) for eos in (stop, None)}
    keys = [(n, e, len(prompts)) for n in rows for e in (stop, None)]
    keys += [("ov-causal-lm-f32", e, b) for e in (stop, None) for b in batches if b != len(prompts)]
    times: dict[tuple[str, int | None, int], list[float]] = {k: [] for k in keys}
    same: dict[tuple[str, int | None, int], bool] = {}
    for round_ in range(args.rounds + 1):  # the first round is untimed
        order = list(times)
        order = order[round_ % len(order):] + order[:round_ % len(order)]
        for name, eos, batch in order:
            start = time.perf_counter()
            new = write(name, eos, batch)
            if round_:
                times[(name, eos, batch)].append(time.perf_counter() - start)
            ref = reference[eos]
            same[(name, eos, batch)] = new.shape == ref.shape and torch.equal(new, ref)
    for eos in (stop, None):
        tokens = real_tokens(reference[eos], eos)
        print(f"\n{'stop at ' + repr(args.stop) if eos is not None else 'no stop'}: "
              f"{tokens} tokens over {len(reference[eos])} rows, the longest {reference[eos].shape[1]}")
        # the optimum-intel row at its own best batch is the one every row is compared with
        peer = min((k for k in times if k[0] == "ov-causal-lm-f32" and k[1] == eos),
                   key=lambda k: statistics.median(times[k]))
        print(f"  (the reference: ov-causal-lm-f32 at its fastest batch, {peer[2]})")
        for key in (k for k in times if k[1] == eos):
            spent, base = times[key], times[peer]
            pairs = [p / s for p, s in zip(base, spent, strict=True)]
            print(f"  {key[0]:28s} @{key[2]:<3d} {tokens / statistics.median(spent):8.1f} tokens/s  "
                  f"{statistics.median(pairs):5.2f}x (pairs {min(pairs):.2f}-{max(pairs):.2f})"
                  f"  generate's tokens: {same[key]}")


if __name__ == "__main__":
    main()
