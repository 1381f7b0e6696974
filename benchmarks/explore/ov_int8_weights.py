"""Experiment (issue 24): which weights int8 compression (NNCF, per channel) can touch and keep
greedy agreement >= 0.98 on generate_llama.py's trained Llama: everything, everything but the
output head, everything but the head and the token embedding, only the MLPs or only the attention
projections; asymmetric and symmetric; and f16 weights with f32 compute (``f16-weights``).

    ACCELKIT_CACHE=<generate_llama's models> HF_HUB_OFFLINE=1 PYTHONPATH=src \
        .venv/bin/python benchmarks/explore/ov_int8_weights.py [--batch 8]

Each row: tokens/s over the 64 held-out prompts (median of interleaved rounds) and greedy
agreement over the whole output against ``model.generate``.
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

from accelkit.export.openvino_lm import export_stateful_lm  # noqa: E402
from accelkit.runtimes.openvino_lm import OpenVinoLm  # noqa: E402
from accelkit.workloads.generation import generate_tokens  # noqa: E402


def head_matmul(graph) -> str:
    """The name of the MatMul that makes the logits (the last one before the logits output)."""
    node = graph.output("logits").get_node().input_value(0).get_node()
    while node.get_type_name() != "MatMul":
        node = node.input_value(0).get_node()
    return node.get_friendly_name()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", default="", help="comma-separated rows [default: all]")
    parser.add_argument("--dq-group", type=int, default=None,
                        help="OpenVINO's DYNAMIC_QUANTIZATION_GROUP_SIZE (0: activations stay float) "
                             "[default: OpenVINO's own, 32 here]")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import nncf

    torch.set_num_threads(1)
    if args.dq_group is not None:  # OpenVINO quantizes activations of int8-weight layers unless told not to
        import openvino as ov

        compile_model = ov.Core.compile_model

        def with_dq(self, graph, device, settings=None):
            return compile_model(self, graph, device, {**(settings or {}),
                                                       "DYNAMIC_QUANTIZATION_GROUP_SIZE": args.dq_group})
        ov.Core.compile_model = with_dq
    _, wl = generate_llama.heldout_workload(Path(tempfile.mkdtemp()))
    model = wl.build_model()
    batches = [b for b, _ in wl.batches(list(wl.eval_data()), wl.default_settings(args.batch, "cpu"))]
    pad = wl.tokenizer.pad_token_id

    def build(mode: str | None, skip_head: bool, skip_embedding: bool, keep: str = "") -> OpenVinoLm:
        graph = export_stateful_lm(model)
        if mode == "f16":  # weights stored in f16, computed in f32: half the bytes a step
            import openvino as ov

            with tempfile.TemporaryDirectory() as tmp:
                ov.save_model(graph, f"{tmp}/m.xml", compress_to_fp16=True)
                graph = ov.Core().read_model(f"{tmp}/m.xml")
        elif mode:
            ignored = nncf.IgnoredScope(names=[head_matmul(graph)] if skip_head else [],
                                        types=["Gather"] if skip_embedding else [],
                                        patterns=[f".*\\.{keep}[./].*"] if keep else [], validate=False)
            graph = nncf.compress_weights(graph, mode=getattr(nncf.CompressWeightsMode, mode), ignored_scope=ignored)
        return OpenVinoLm(graph, model=model)

    rows = {"float": (None, False, False), "int8-asym-all": ("INT8_ASYM", False, False),
            "int8-asym-but-head": ("INT8_ASYM", True, False), "int8-asym-but-head-emb": ("INT8_ASYM", True, True),
            "int8-sym-all": ("INT8_SYM", False, False), "int8-sym-but-head": ("INT8_SYM", True, False),
            "int8-mlp-only": ("INT8_ASYM", True, True, "self_attn"), "int8-attention-only": ("INT8_ASYM", True, True, "mlp"),
            "f16-weights": ("f16", False, False)}
    with torch.inference_mode():
        ref = [generate_tokens(model, b, 64, pad) for b in batches]
        for name in args.rows.split(",") if args.rows else rows:  # one compiled graph at a time
            spec = rows[name]
            runner = build(*spec)
            outs = [generate_tokens(runner, b, 64, pad) for b in batches]
            times = []
            for _ in range(args.rounds):
                start = time.perf_counter()
                for b in batches:
                    generate_tokens(runner, b, 64, pad)
                times.append(time.perf_counter() - start)
            same = sum(float((o == r).float().mean()) for o, r in zip(outs, ref, strict=True)) / len(ref)
            tokens = sum(b["input_ids"].shape[0] for b in batches) * 64
            print(f"batch {args.batch} dq {args.dq_group}  {name:24s} {tokens / statistics.median(times):8.1f} tokens/s  "
                  f"agreement {same:.4f}", flush=True)
            del runner


if __name__ == "__main__":
    main()
