"""Experiment (issue 24): where a compiled static-cache decode step spends its time at batch 1, and
which compile options make it faster, on a random-weight Llama of the generate_llama.py shape
(hidden 384, 6 layers, 6 heads, 3 key/value heads, intermediate 1024, vocab 4096, tied
embeddings; speed does not depend on the weights' values), 2 threads, a 12-token prompt.

    PYTHONPATH=src .venv/bin/python benchmarks/explore/decode_step_profile.py [--new-tokens 64]
        [--rounds 5] [--variants default,static,static-v1+bf16,...] [--profile static]

Times ``model.generate`` (greedy, dynamic cache) and each StaticCacheGenerator variant in
interleaved rounds (median tokens/s over rounds, new tokens only, prompt pass included as bench
counts it), checks each variant's tokens against generate's, and with ``--profile NAME`` prints
torch.profiler's table for 32 of that variant's compiled steps, the step alone timed against the
whole loop (2 generate calls), and dynamo's graph-break and recompile counters.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from accelkit.techniques.speculative_static import (
    CompiledSpeculativeConfig,
    CompiledSpeculativeGenerator,
    make_draft,
)
from accelkit.techniques.static_cache import StaticCacheConfig, StaticCacheGenerator

torch.set_num_threads(2)
warnings.simplefilter("ignore")


def build_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    hidden = 384
    cfg = LlamaConfig(vocab_size=4096, hidden_size=hidden, intermediate_size=hidden * 8 // 3 // 16 * 16,
                      num_hidden_layers=6, num_attention_heads=hidden // 64, num_key_value_heads=hidden // 128,
                      max_position_embeddings=512, eos_token_id=0, bos_token_id=0, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).eval()
    # random init gives near-flat logits whose argmax flips under any reordering; scale the
    # embeddings up so greedy tokens are decided by margins a trained model would have
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(20)
    return model


# name -> StaticCacheConfig fields; "default" is model.generate. Tried and dropped (no gain beyond
# noise on the 2-core Zen 4, 5.5-5.9 ms a token each, the step then being aten::mm-bound):
# inductor freezing, cpp_wrapper, max-autotune, a 4D boolean mask built in the step
VARIANTS: dict[str, dict] = {
    "static-v1": {"gemv": False, "attention": "", "lean_guards": False},  # the step before issue 24
    "static-eager-attn": {"gemv": False, "lean_guards": False},
    "static-lean-guards": {"gemv": False, "attention": "", "lean_guards": True},
    "static-gemv": {"attention": "", "lean_guards": False},
    "static": {},  # gemv, eager attention, lean guards
    "static-mm": {"gemv": False},  # aten matmuls in one-row steps (many-row steps: the GEMM template)
    "static-sdpa": {"attention": "sdpa"},
    "static-gqa": {"attention": "gqa"},
}
# name -> CompiledSpeculativeConfig fields
SPECULATIVE: dict[str, dict] = {
    "spec-bf16-k2": {"draft": "bf16", "draft_tokens": 2},
    "spec-bf16-k4": {"draft": "bf16", "draft_tokens": 4},
    "spec-layers2-k3": {"draft": "layers", "exit_layer": 2, "draft_tokens": 3},
}


def make(model, name: str):
    if name == "default":
        return lambda ids, n: model.generate(input_ids=ids, max_new_tokens=n, do_sample=False, pad_token_id=0,
                                             eos_token_id=None)
    if name in SPECULATIVE:
        config = CompiledSpeculativeConfig(**SPECULATIVE[name])
        runner = CompiledSpeculativeGenerator(model, make_draft(model, config), config)
        RUNNERS[name] = runner
    elif name.endswith("+bf16"):  # bf16-cast before the compiled loop (lossy: agreement shows it)
        import copy

        runner = StaticCacheGenerator(copy.deepcopy(model).to(torch.bfloat16), StaticCacheConfig(
            **VARIANTS[name.removesuffix("+bf16")]))
    else:
        runner = StaticCacheGenerator(model, StaticCacheConfig(**VARIANTS[name]))
    return lambda ids, n: runner.generate(input_ids=ids, max_new_tokens=n, pad_token_id=0, eos_token_id=None)


RUNNERS: dict = {}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--variants", default="default," + ",".join(VARIANTS))
    ap.add_argument("--profile", default="")
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args()
    model = build_model()
    ids = torch.randint(1, 4096, (args.batch, 12), generator=torch.Generator().manual_seed(1))
    names = args.variants.split(",")
    runs, ref = {}, None
    with torch.inference_mode():
        ref = make(model, "default")(ids, args.new_tokens)
        for name in names:
            start = time.perf_counter()
            runs[name] = make(model, name)
            out = runs[name](ids, args.new_tokens)  # compiles
            out = runs[name](ids, args.new_tokens)
            same = (out[:, 12:] == ref[:, 12:]).float().mean().item()
            print(f"{name:28s} warm-up {time.perf_counter() - start:6.1f} s  agreement {same:.3f}", flush=True)
        times: dict[str, list[float]] = {n: [] for n in names}
        for _ in range(args.rounds):
            for name in names:
                start = time.perf_counter()
                runs[name](ids, args.new_tokens)
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times[names[0]])
    for name in names:
        t, best = statistics.median(times[name]), min(times[name])
        print(f"{name:28s} {args.batch * args.new_tokens / t:7.1f} tok/s  {t / args.new_tokens * 1e3:6.2f} ms/token  "
              f"{base / t:5.2f}x  (median of {args.rounds}, vs {names[0]}; best {best / args.new_tokens * 1e3:.2f} ms)")
    for name, runner in RUNNERS.items():
        print(f"{name}: {runner.stats['accepted'] / max(runner.stats['rounds'], 1):.2f} drafts accepted a round")
    if args.profile:
        profile(model, ids, args.profile, args.new_tokens)


def _timed(holder, label: str, spent: dict):
    step = holder._step

    def timed(*a):
        start = time.perf_counter()
        out = step(*a)
        spent.setdefault(f"{label} q={a[0].shape[1]}", []).append(time.perf_counter() - start)
        return out

    holder._step = timed
    return step


def profile(model, ids, name: str, n: int) -> None:
    from torch._dynamo.utils import counters

    if name in SPECULATIVE:
        runner = RUNNERS[name]
        holders = {"draft": runner.drafter, "verify": runner.target}
    else:
        runner = StaticCacheGenerator(model, StaticCacheConfig(**VARIANTS[name]))
        holders = {"step": runner}
    with torch.inference_mode():
        runner.generate(input_ids=ids, max_new_tokens=n, pad_token_id=0, eos_token_id=None)
        print("graph breaks:", dict(counters["graph_break"]), " recompiles:", dict(counters["recompiles"]),
              " frames:", dict(counters["stats"]))
        # each compiled step alone against the whole loop: wrap the steps in timers
        spent: dict[str, list[float]] = {}
        steps = {label: _timed(holder, label, spent) for label, holder in holders.items()}
        start = time.perf_counter()
        for _ in range(5):
            runner.generate(input_ids=ids, max_new_tokens=n, pad_token_id=0, eos_token_id=None)
        loop_ms = (time.perf_counter() - start) / 5 / n * 1e3
        for label, times in spent.items():
            print(f"{name}: {label} step {statistics.median(times) * 1e3:.2f} ms (median of {len(times)})")
        print(f"{name}: whole loop {loop_ms:.2f} ms a new token (prompt pass included)")
        for label, holder in holders.items():
            holder._step = steps[label]
        with torch.profiler.profile() as prof:
            for _ in range(2):
                runner.generate(input_ids=ids, max_new_tokens=n, pad_token_id=0, eos_token_id=None)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))


if __name__ == "__main__":
    main()
