"""Random-weight Hugging Face text models (a 4-layer, 256-wide BERT classifier and GPT-2) and data
for them, built from configs with save_pretrained into out/medium/: no trained classifier or
GPT-2 ships in an installed package, and nothing may be downloaded.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/random_text_models.py
    .venv/bin/accelkit optimize --model out/medium/cls-256 --data out/medium/reviews.csv --task text-classification \\
        --text-column body --label-column sentiment --time-budget 2m --out out/own-cls
    .venv/bin/accelkit optimize --model out/medium/gpt2-256 --data out/medium/sentences.txt --task causal-lm \\
        --time-budget 2m --out out/own-gpt2

Their quality figures show how little a plan moves the predictions, not a trained model's accuracy.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from transformers import BertForSequenceClassification, GPT2Config, GPT2LMHeadModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import model_folders as mf  # noqa: E402  (the tiny-model builders the tests use)

ROOT = Path("out/medium")


def main() -> None:
    ROOT.mkdir(parents=True, exist_ok=True)
    tok = mf._tokenizer(ROOT / "cls-256", 128)
    torch.manual_seed(1)
    cfg = mf._bert_config(num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"},
                          label2id={"neg": 0, "neu": 1, "pos": 2})
    cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads = 256, 4, 4
    cfg.intermediate_size, cfg.max_position_embeddings = 1024, 128
    BertForSequenceClassification(cfg).eval().save_pretrained(ROOT / "cls-256")
    tok.save_pretrained(ROOT / "cls-256")

    tok = mf._tokenizer(ROOT / "gpt2-256", 128)
    tok.eos_token = "[SEP]"
    torch.manual_seed(2)
    gcfg = GPT2Config(vocab_size=len(mf.SPECIALS) + 600, n_positions=128, n_embd=256, n_layer=4, n_head=4,
                      bos_token_id=3, eos_token_id=3, pad_token_id=3)
    GPT2LMHeadModel(gcfg).eval().save_pretrained(ROOT / "gpt2-256")
    tok.save_pretrained(ROOT / "gpt2-256")

    mf.labelled_csv(ROOT, 1000)
    mf.text_file(ROOT, 1000)
    print(f"models and data → {ROOT}")


if __name__ == "__main__":
    main()
