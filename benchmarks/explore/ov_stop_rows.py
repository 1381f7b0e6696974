"""Experiment (issue 24): what finished rows cost when prompts stop at a token. Prompts from
generate_llama.py's held-out set on its trained Llama, greedy, stopping at ``--stop`` (". "
ends a sentence: rows end after a few tokens or after many). ``generate`` and optimum-intel's
``OVModelForCausalLM`` step every row of a batch until its last one ends; accelkit's
``openvino-generate`` drops a row from the batch once it wrote the stop token.
Each row is timed also without the stop (every row writes ``--new-tokens``), in the same
interleaved rounds; the optimum-intel row also at other batch sizes, for its own best.

    ACCELKIT_CACHE=~/.cache/accelkit HF_HUB_OFFLINE=1 PYTHONPATH=src \\
        .venv-peers/bin/python benchmarks/explore/ov_stop_rows.py [--prompts 64] [--batch 64] [--rounds 5]

Prints tokens/s counting each row's tokens up to and including its stop, the median of pair
ratios against the optimum-intel row at its fastest batch, and whether each row wrote
``generate``'s tokens (at ``--batch``).
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
    parser.add_argument("--prompts", type=int, default=64, help="64: the held-out prompts; more: calibration too")
    parser.add_argument("--batch", type=int, default=64)
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

    where = Path(tempfile.mkdtemp())
    target, wl = generate_llama.heldout_workload(where, args.new_tokens)
    tok = AutoTokenizer.from_pretrained(target)
    tok.padding_side, tok.pad_token = "left", tok.pad_token or tok.eos_token
    stop = tok.encode(args.stop, add_special_tokens=False)[-1]
    prompts = list(wl.eval_data()) if args.prompts == 64 else \
        generate_llama.prompts_file((args.prompts + 1) // 2, 8, where).read_text().splitlines()[:args.prompts]
    batches = sorted({args.batch, *(int(b) for b in args.peer_batches.split(",") if b)})
    chunks = {b: [tok(prompts[i:i + b], return_tensors="pt", padding=True, return_token_type_ids=False)
                  for i in range(0, len(prompts), b)] for b in batches}
    model = wl.build_model()
    models = {"generate": model, "accelkit openvino-generate": openvino_generator(model),
              "ov-causal-lm-f32": OVModelForCausalLM.from_pretrained(
                  str(target), export=True, compile=True, ov_config={"INFERENCE_PRECISION_HINT": "f32"})}

    def cut(row: list[int], eos: int | None) -> list[int]:
        return row[: row.index(eos) + 1] if eos is not None and eos in row else row

    def write(name: str, eos: int | None, batch: int) -> list[list[int]]:
        written = []
        with torch.inference_mode():
            for enc in chunks[batch]:
                out = models[name].generate(**enc, max_new_tokens=args.new_tokens, do_sample=False, num_beams=1,
                                            pad_token_id=tok.pad_token_id, eos_token_id=eos)
                written += [cut(row, eos) for row in out[:, enc["input_ids"].shape[1]:].tolist()]
        return written

    reference = {eos: write("generate", eos, args.batch) for eos in (stop, None)}
    keys = [(name, eos, args.batch) for name in models for eos in (stop, None)]
    keys += [("ov-causal-lm-f32", eos, b) for eos in (stop, None) for b in batches if b != args.batch]
    times: dict[tuple[str, int | None, int], list[float]] = {k: [] for k in keys}
    same: dict[tuple[str, int | None, int], float] = {}
    for round_ in range(args.rounds + 1):  # the first round is untimed
        order = keys[round_ % len(keys):] + keys[:round_ % len(keys)]
        for name, eos, batch in order:
            start = time.perf_counter()
            new = write(name, eos, batch)
            if round_:
                times[(name, eos, batch)].append(time.perf_counter() - start)
            same[(name, eos, batch)] = statistics.mean(a == b for a, b in zip(new, reference[eos], strict=True))
    for eos in (stop, None):
        tokens = sum(map(len, reference[eos]))
        print(f"\n{'stop at ' + repr(args.stop) if eos is not None else 'no stop'}: {tokens} tokens over "
              f"{len(prompts)} prompts, {min(map(len, reference[eos]))} to {max(map(len, reference[eos]))} a prompt")
        peer = min((k for k in times if k[0] == "ov-causal-lm-f32" and k[1] == eos),
                   key=lambda k: statistics.median(times[k]))
        print(f"  (the reference: ov-causal-lm-f32 at its fastest batch, {peer[2]})")
        for key in (k for k in times if k[1] == eos):
            pairs = [p / s for p, s in zip(times[peer], times[key], strict=True)]
            print(f"  {key[0]:28s} @{key[2]:<3d} {tokens / statistics.median(times[key]):8.1f} tokens/s  "
                  f"{statistics.median(pairs):5.2f}x (pairs {min(pairs):.2f}-{max(pairs):.2f})"
                  f"  prompts written as generate: {same[key]:.3f}")


if __name__ == "__main__":
    main()
