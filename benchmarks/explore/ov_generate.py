"""Experiment (issue 24): accelkit's ``openvino-generate`` (its own stateful export, lean greedy
loop) against optimum-intel's ``OVModelForCausalLM.generate`` on generate_llama.py's trained Llama
and held-out prompts, both at OpenVINO fp32 precision, with the cache precision varied (and, named
with ``--only``, int8 weights through NNCF: accelkit-ov-int8, optimum-ov-int8-f32).

    ACCELKIT_CACHE=<generate_llama's models> HF_HUB_OFFLINE=1 PYTHONPATH=src \
        .venv-peers/bin/python benchmarks/explore/ov_generate.py [--batch 8] [--only NAME]

Each row is timed over every held-out batch in interleaved rounds (median of rounds; tokens/s),
with greedy agreement against ``model.generate``. ``--only NAME[,NAME]`` builds those rows (and the
reference) only, so a row can also be timed in a process of its own: two compiled OpenVINO models in one process
keep two thread pools on the same cores.
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

from accelkit.techniques.openvino_generate import OpenVinoGenerateConfig, openvino_generator  # noqa: E402
from accelkit.workloads.generation import generate_tokens  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated rows [default: the fp32-weight ones]")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(2)
    target, wl = generate_llama.heldout_workload(Path(tempfile.mkdtemp()))
    model = wl.build_model()
    settings = wl.default_settings(args.batch, "cpu")
    batches = [b for b, _ in wl.batches(list(wl.eval_data()), settings)]
    pad = wl.tokenizer.pad_token_id

    def ours(kv: str, weights: str = "float"):
        return openvino_generator(model, OpenVinoGenerateConfig(kv_cache=kv, weights=weights))

    def optimum(int8: bool = False):
        from optimum.intel import OVModelForCausalLM

        return OVModelForCausalLM.from_pretrained(target, export=True, compile=True, load_in_8bit=int8,
                                                  ov_config={"INFERENCE_PRECISION_HINT": "f32"})
    rows = {"accelkit-ov-kv-f32": lambda: ours("f32"), "accelkit-ov-kv-f16": lambda: ours("f16"),
            "accelkit-ov-kv-u8": lambda: ours("u8"), "optimum-ov-f32": optimum,
            "accelkit-ov-int8": lambda: ours("f32", "int8"), "optimum-ov-int8-f32": lambda: optimum(True)}
    default_rows = ["accelkit-ov-kv-f32", "accelkit-ov-kv-f16", "accelkit-ov-kv-u8", "optimum-ov-f32"]
    names = args.only.split(",") if args.only else default_rows
    built = {name: rows[name]() for name in names}
    with torch.inference_mode():
        ref = [generate_tokens(model, b, 64, pad) for b in batches]
        outs = {n: [generate_tokens(m, b, 64, pad) for b in batches] for n, m in built.items()}  # also the warm-up
        times: dict[str, list[float]] = {n: [] for n in names}
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[: r % len(names)]:
                start = time.perf_counter()
                for b in batches:
                    generate_tokens(built[name], b, 64, pad)
                times[name].append(time.perf_counter() - start)
    tokens = sum(b["input_ids"].shape[0] for b in batches) * 64
    for name in names:
        same = sum(float((o == r).float().mean()) for o, r in zip(outs[name], ref, strict=True)) / len(ref)
        print(f"batch {args.batch}  {name:22s} {tokens / statistics.median(times[name]):8.1f} tokens/s  "
              f"agreement {same:.4f}")


if __name__ == "__main__":
    main()
