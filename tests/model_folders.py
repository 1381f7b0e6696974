"""Tiny model folders built from configs with ``save_pretrained`` (no downloads): a 2-layer
sentence-transformers BERT, a 2-layer BERT classifier, a 2-layer GPT-2 and a small CNN image
classifier, plus data files for them in the formats a user passes to ``--data``."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import torch

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def sentences(n: int = 120) -> list[str]:
    from accelkit.workloads.minilm import pydoc_sentences

    return list(pydoc_sentences()[:n])


def _tokenizer(folder: Path, max_length: int):
    from transformers import BertTokenizerFast

    words = Counter(w for s in sentences(400) for w in re.findall(r"[a-z]+|[^\sa-z]", s.lower()))
    vocab = SPECIALS + sorted(w for w, _ in words.most_common(600))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), model_max_length=max_length)
    return tok


def _bert_config(**extra):
    from transformers import BertConfig

    return BertConfig(vocab_size=len(SPECIALS) + 600, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=64, **extra)


def sentence_transformers_folder(root: Path, max_seq_length: int = 48) -> Path:
    """modules.json + Transformer at the folder root + mean Pooling + Normalize, as
    sentence-transformers saves all-MiniLM-L6-v2."""
    from transformers import BertModel

    folder = root / "tiny-st"
    tok = _tokenizer(folder, 64)
    torch.manual_seed(0)
    BertModel(_bert_config(architectures=["BertModel"]), add_pooling_layer=False).save_pretrained(folder)
    tok.save_pretrained(folder)
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length,
                                                                  "do_lower_case": False}))
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    return folder


def bert_classifier_folder(root: Path) -> Path:
    from transformers import BertForSequenceClassification

    folder = root / "tiny-cls"
    tok = _tokenizer(folder, 64)
    torch.manual_seed(1)
    cfg = _bert_config(num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"},
                       label2id={"neg": 0, "neu": 1, "pos": 2})
    BertForSequenceClassification(cfg).eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def gpt2_folder(root: Path) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = root / "tiny-gpt2"
    tok = _tokenizer(folder, 64)
    tok.eos_token = "[SEP]"
    torch.manual_seed(2)
    cfg = GPT2Config(vocab_size=len(SPECIALS) + 600, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                     bos_token_id=3, eos_token_id=3, pad_token_id=3)
    GPT2LMHeadModel(cfg).eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def cnn_folder(root: Path) -> Path:
    from transformers import ResNetConfig, ResNetForImageClassification, ViTImageProcessor

    folder = root / "tiny-cnn"
    torch.manual_seed(3)
    cfg = ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
                       num_labels=2, id2label={0: "dark", 1: "light"}, label2id={"dark": 0, "light": 1})
    ResNetForImageClassification(cfg).eval().save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def text_file(root: Path, n: int = 120) -> Path:
    path = root / "sentences.txt"
    path.write_text("\n".join(sentences(n)) + "\n", encoding="utf-8")
    return path


def pairs_jsonl(root: Path, n: int = 96) -> Path:
    """(anchor, positive) pairs: each sentence and its own first half (an easy positive; the other
    rows' halves are the in-batch negatives)."""
    path = root / "pairs.jsonl"
    rows = [{"anchor": s, "positive": " ".join(s.split()[: max(3, len(s.split()) // 2)])} for s in sentences(n)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def labelled_csv(root: Path, n: int = 120) -> Path:
    import csv

    path = root / "reviews.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "body", "sentiment"])
        for i, s in enumerate(sentences(n)):
            w.writerow([i, s, ("neg", "neu", "pos")[len(s) % 3]])
    return path


def image_folder(root: Path, n_per_class: int = 12) -> Path:
    from PIL import Image

    folder = root / "images"
    g = torch.Generator().manual_seed(0)
    for label, base in (("dark", 40), ("light", 200)):
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            noise = torch.randint(0, 50, (24, 24, 3), generator=g)
            Image.fromarray((noise + base).clamp(0, 255).to(torch.uint8).numpy()).save(folder / label / f"{i}.png")
    return folder


def _word_tokenizer(folder: Path, max_length: int):
    """A word-level tokenizer over pydoc words with an EOS and no pad token, as GPT-2's and Llama's."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = Counter(w for s in sentences(400) for w in re.findall(r"[a-z]+|[^\sa-z]", s.lower()))
    vocab = {w: i for i, w in enumerate(["<unk>", "</s>", *sorted(w for w, _ in words.most_common(600))])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", eos_token="</s>",
                                  model_max_length=max_length)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(folder)
    return tok


def llama_folder(root: Path, name: str = "tiny-llama", *, layers: int = 2, hidden: int = 64, seed: int = 4) -> Path:
    """A random-weight Llama causal LM over ``_word_tokenizer`` (a draft: fewer layers, narrower)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = root / name
    tok = _word_tokenizer(folder, 128)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id, tie_word_embeddings=False,
                      architectures=["LlamaForCausalLM"])
    LlamaForCausalLM(cfg).eval().save_pretrained(folder)
    return folder


def gpt2_generation_folder(root: Path) -> Path:
    """A random-weight GPT-2 causal LM over ``_word_tokenizer`` (no pad token)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = root / "tiny-gpt2-gen"
    tok = _word_tokenizer(folder, 128)
    torch.manual_seed(5)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=2, n_head=4,
                     bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
    GPT2LMHeadModel(cfg).eval().save_pretrained(folder)
    return folder


def prompts_file(root: Path, n: int = 24, words: int = 6) -> Path:
    path = root / "prompts.txt"
    path.write_text("\n".join(" ".join(s.split()[:words]) for s in sentences(n)) + "\n", encoding="utf-8")
    return path


def tiny_causal_lm(kind: str, seed: int = 0):
    """A random 3-layer, 32-wide causal LM in eval mode: ``kind`` "llama", "qwen2" (both with grouped
    key/value heads) or "gpt2"; vocab 100, 64 positions (the speculative-decoding tests' models)."""
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    torch.manual_seed(seed)
    if kind == "llama":
        return LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                            num_attention_heads=4, num_key_value_heads=2,
                                            max_position_embeddings=64)).eval()
    if kind == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                            num_attention_heads=4, num_key_value_heads=2,
                                            max_position_embeddings=64)).eval()
    return GPT2LMHeadModel(GPT2Config(vocab_size=100, n_positions=64, n_embd=32, n_layer=3, n_head=4, bos_token_id=0,
                                      eos_token_id=0)).eval()


def left_padded_batch(vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three prompts of 7 token ids below ``vocab`` (pad id 0), two of them left-padded (by 3 and
    by 1), with their attention mask: the generation loops' tests' batch."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(2, vocab, (3, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    mask[2, :1] = 0
    return ids.masked_fill(mask == 0, 0), mask
