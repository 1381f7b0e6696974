"""Text generation on a small Llama-style model trained briefly on pydoc text: ``model.generate``
as users run it (``default``) beside bf16, weight-only int8, dynamic int8, speculative decoding
with a smaller draft of the same tokenizer, early-exit self-speculation (the model's first layers
draft), speculative decoding with a draft distilled from the model (trained on first use, cached),
and a static cache with a compiled decode step (alone and after weight-only int8), all through
``accelkit.bench`` (interleaved rounds); then the peer rows (HF generate with a static cache +
torch.compile, and in bf16 where native) beside accelkit's default and its fastest variant within
a 0.02 agreement drop, and optimum-intel's OVModelForCausalLM (fp32 compute, OpenVINO's default
precision, int8 weights) where it is installed: run with ``.venv-peers/bin/python`` for those rows.

Run: .venv/bin/python benchmarks/generate_llama.py [--batch-sizes 1,8] [--prompts 64] [--new-tokens 64]
     [--train-minutes 4] [--repeats 3] [--variants ...] [--peers ...] [--quick]
The first run trains the target and the draft (minutes each) and caches both, with their
tokenizer, under $ACCELKIT_CACHE/generate-llama/ (written to a temporary folder, then renamed);
later runs load them. ``--quick`` is a tiny smoke run (seconds of training, a few prompts).
Prints one line per batch size and variant: new tokens/s, speed-up, time to first token, agreement.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import torch

from accelkit.bench import bench
from accelkit.peers import GENERATION_PEERS, generation_peers_beside_bench
from accelkit.workloads import workload_from_model
from accelkit.workloads.base import cache_dir

VARIANTS = ["bf16", "bf16-cast", "int8-weight-only", "int8-dynamic", "speculative", "self-speculative",
            "speculative-distilled", "static-cache-compile", "int8-weight-only+static-cache-compile"]
# HF generate's own fast paths, timed beside accelkit's default and its fastest variant within a 0.02 agreement drop
PEERS = ["hf-generate", "hf-static-compile", "hf-static-compile-bf16", "hf-prompt-lookup", "ov-causal-lm-f32", "ov-causal-lm", "ov-causal-lm-int8"]
EOS = "</s>"


def pydoc_text() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))


def train_tokenizer(vocab_size: int):
    """A byte-level BPE over pydoc text, EOS and no pad token (as GPT-2's and Llama's)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(pydoc_text().split("\n\n"), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token=EOS, model_max_length=512)


def train_llama(tokenizer, hidden: int, layers: int, minutes: float, seed: int, seq: int = 128,
                batch: int = 16):
    """A Llama-architecture causal LM trained on random windows of pydoc text for ``minutes``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 8 // 3 // 16 * 16,
                      num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
                      num_key_value_heads=max(1, hidden // 128), max_position_embeddings=512,
                      eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id,
                      tie_word_embeddings=True, architectures=["LlamaForCausalLM"])
    model = LlamaForCausalLM(cfg)
    ids = torch.tensor(tokenizer(pydoc_text(), verbose=False)["input_ids"], dtype=torch.long)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    rng = random.Random(seed)
    model.train()
    steps, deadline, loss = 0, time.perf_counter() + minutes * 60, float("nan")
    while time.perf_counter() < deadline:
        starts = [rng.randrange(len(ids) - seq - 1) for _ in range(batch)]
        x = torch.stack([ids[s : s + seq] for s in starts])
        step_loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        step_loss.backward()
        opt.step()
        steps, loss = steps + 1, float(step_loss.detach())
    print(f"trained {layers}x{hidden} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params): "
          f"{steps} steps, last loss {loss:.3f}")
    return model.eval()


def cached_folder(name: str, make) -> Path:
    """``$ACCELKIT_CACHE/generate-llama/<name>``, made once by ``make(folder)`` in a temporary
    folder renamed into place (a killed run leaves no half-written model)."""
    root = cache_dir() / "generate-llama"
    folder = root / name
    if (folder / "config.json").is_file():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        make(tmp)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def models(quick: bool, minutes: float) -> tuple[Path, Path]:
    shape = {"vocab": 512 if quick else 4096, "target": (64, 2) if quick else (384, 6),
             "draft": (32, 1) if quick else (128, 2), "minutes": 0.05 if quick else minutes}
    key = hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:10]
    tokenizer = None

    def tok():
        nonlocal tokenizer
        tokenizer = tokenizer or train_tokenizer(shape["vocab"])
        return tokenizer

    def make(role: str, seed: int, share: float):
        def write(folder: Path) -> None:
            hidden, layers = shape[role]
            train_llama(tok(), hidden, layers, shape["minutes"] * share, seed).save_pretrained(folder)
            tok().save_pretrained(folder)
        return write

    # the draft is a quarter of the target's depth and a third of its width: half the training time
    folders = (cached_folder(f"target-{key}", make("target", 0, 1.0)), cached_folder(f"draft-{key}", make("draft", 1, 0.5)))
    for folder in folders:
        tokenizer_for_transformers_4(folder)
    return folders


def tokenizer_for_transformers_4(folder: Path) -> None:
    """Name the tokenizer's class as transformers 4 knows it: the OpenVINO peer rows run in
    ``.venv-peers``, where optimum-intel pins transformers 4, which cannot read the class
    transformers 5 writes (``TokenizersBackend``); transformers 5 reads either name."""
    path = folder / "tokenizer_config.json"
    found = json.loads(path.read_text(encoding="utf-8"))
    if found.get("tokenizer_class") != "TokenizersBackend":
        return
    found["tokenizer_class"] = "PreTrainedTokenizerFast"
    found.pop("backend", None)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(found, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def prompts_file(n_held: int, words: int, where: Path) -> Path:
    """2 × ``n_held`` prompts (the first ``words`` words of pydoc sentences): half calibration, half held out."""
    from accelkit.workloads.minilm import pydoc_sentences

    lines = [" ".join(s.split()[:words]) for s in pydoc_sentences() if len(s.split()) > words]
    path = where / "prompts.txt"
    path.write_text("\n".join(lines[: 2 * n_held]) + "\n", encoding="utf-8")
    return path


def heldout_workload(where: Path, new_tokens: int = 64) -> tuple[Path, object]:
    """The cached trained target (trained first if missing, 6 minutes) and its text-generation
    workload on 64 held-out pydoc prompts (prompt files in ``where``): what the explore scripts
    measure on, as this script's default run does."""
    target, _ = models(False, 6.0)  # 6.0 as --train-minutes 6 parses it: the key hashes the number's text
    data = prompts_file(64, 8, where)
    return target, workload_from_model(target, data, task="text-generation", max_new_tokens=new_tokens,
                                       calib_size=64, eval_size=64)

def _perplexity(details: dict) -> str:
    if "perplexity" not in details:  # a runtime that returns tokens, not logits
        return "perplexity - (no logits)"
    return f"perplexity {details['perplexity']:.2f} ({details.get('perplexity_change', float('nan')):+.2%})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-sizes", default="1,8", help="comma-separated batch sizes of the default run")
    parser.add_argument("--prompts", type=int, default=64, help="held-out prompts")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--train-minutes", type=float, default=4.0, help="the target's, on first use (the draft: half)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated peer rows ('' for none); "
                        f"known: {', '.join(GENERATION_PEERS)}")
    parser.add_argument("--threads", type=int, default=None, help="torch threads [default: torch's own]")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.new_tokens, args.repeats, args.batch_sizes = 4, 4, 1, "2"
    if args.threads:
        torch.set_num_threads(args.threads)
    target, draft = models(args.quick, args.train_minutes)
    print(f"torch threads {torch.get_num_threads()}; target {target}; draft {draft}")
    with tempfile.TemporaryDirectory() as tmp:
        data = prompts_file(args.prompts, 8, Path(tmp))
        wl = workload_from_model(target, data, task="text-generation", max_new_tokens=args.new_tokens, draft=draft,
                                 calib_size=args.prompts, eval_size=args.prompts)
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            peers = [p.strip() for p in args.peers.split(",") if p.strip()]
            res = bench(wl, [v.strip() for v in args.variants.split(",") if v.strip()], batch_size=batch,
                        repeats=args.repeats, roofline=False, flops=False, keep_built=bool(peers))
            for v in res.variants:
                if v.error:
                    print(f"batch {batch:<3} {v.name:<18} ERROR {v.error}")
                    continue
                ttft = v.details.get("time_to_first_token_ms", {})
                first = ttft.get("p50", float("nan"))
                # a plan at another batch size (prompt-batching) has no batch-for-batch pairs with default
                first_vs = (f"{ttft['vs_default']:.2f}x default's" if "vs_default" in ttft
                            else f"a batch of {v.details.get('batch_size', '?')}")
                q = v.quality
                print(f"batch {batch:<3} {v.name:<18} {v.throughput:8.1f} {v.throughput_unit}  speed-up "
                      f"{v.speedup:5.2f}x  TTFT p50 {first:7.1f} ms ({first_vs})  agreement {q['greedy_agreement']:.4f} "
                      f"(prefix {q['prefix_agreement']:.4f}, first divergence {q['first_divergence']:.1f})  "
                      f"peak {v.peak_memory_mb or 0:.0f} MB  " + _perplexity(v.details)
                      + (f"  compile {v.details['compile_s']:.0f} s" if "compile_s" in v.details else ""))
            if peers:
                print_peer_rows(batch, generation_peers_beside_bench(wl, res, repeats=args.repeats, peers=peers))
            res.built = {}


def print_peer_rows(batch: int, table: dict) -> None:
    """One line per peer row: tokens/s, ratio to HF generate (fp32, dynamic cache), agreement, or why it is missing."""
    for r in table["rows"]:
        if "error" in r:
            print(f"batch {batch:<3} peer {r['name']:<28} {r['error']}")
            continue
        own = r.get("batch_rule") == "own best"
        vs = (f"  {r['vs_best_peer']:.2f}x the fastest peer {'at its own best batch' if own else 'at this batch'}"
              if "vs_best_peer" in r else "")
        print(f"batch {batch:<3} peer {r['name']:<28} {r['tokens_per_s']:8.1f} tokens/s  ratio {r['ratio']:5.2f}x  "
              f"agreement {r['greedy_agreement']:.4f}  run at batch {r.get('batch_size')}{vs}")
    print(f"batch {batch:<3} fastest peer: {table.get('best_peer')} at this batch; "
          f"{table.get('best_peer_own_batch') or '-'} at its own best batch")


if __name__ == "__main__":
    main()
