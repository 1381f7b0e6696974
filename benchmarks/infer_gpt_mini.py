"""gpt-mini token generation with weight-only int8/int4 (torchao) vs fp32: tokens/s and val loss.

Run: HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/infer_gpt_mini.py [--tokens 64] [--repeats 5]
Greedy decoding at batch 1 (memory-bound in principle); generation runs timed interleaved with
fp32. Note: gpt-mini's 0.9M parameters fit in L2 cache, so weight bandwidth is not its limit here.
"""

from __future__ import annotations

import argparse
import copy

import torch

from accelkit.measure import compare_interleaved
from accelkit.variants import build_variant
from accelkit.workloads import RunSettings, get_workload
from accelkit.workloads.gpt_mini import generate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--variants", default="int8-weight-only,int4-weight-only,bf16-cast")
    args = parser.parse_args()
    wl = get_workload("gpt-mini")
    base = wl.build_model()
    settings = RunSettings(batch_size=16)
    data = wl.eval_data(32)
    models = {"baseline": base}
    details = {}
    for name in args.variants.split(","):
        built = build_variant(name, copy.deepcopy(base), settings, wl)
        model = built.model
        models[name] = model
        details[name] = built.details
    prompt = data["inputs"][:1, :16]  # (1, 16) bytes of held-out text
    ref = wl.predict(base, data, settings)
    loss = {n: wl.quality(wl.predict(m, data, settings), ref, data)["val_loss"] for n, m in models.items()}
    agree = {}
    base_tokens = generate(base, prompt, args.tokens)
    for n, m in models.items():
        agree[n] = float((generate(m, prompt, args.tokens) == base_tokens)[:, 16:].float().mean())
    timings = compare_interleaved({n: (lambda m=m: generate(m, prompt, args.tokens)) for n, m in models.items()},
                                  baseline="baseline", repeats=args.repeats)
    print(f"gpt-mini greedy generation, batch 1, {args.tokens} new tokens, {args.repeats} interleaved rounds, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'variant':20s} {'tokens/s':>9s} {'speed-up':>8s} {'val loss':>9s} {'same tokens':>11s}")
    for n, t in timings.items():
        print(f"{n:20s} {args.tokens / (t.p50_ms / 1e3):9.1f} {t.speedup:7.2f}x {loss[n]:9.4f} {agree[n]:11.1%}  "
              f"{details.get(n, '')}")


if __name__ == "__main__":
    main()
