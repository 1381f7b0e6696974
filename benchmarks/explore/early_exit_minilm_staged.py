"""Exploration (issue 7): is a 4-layer prefix a good enough early exit for minilm?

Fine-tunes layers 1-4 (and the embeddings) so that their pooled output matches the teacher's
embedding (stage 1 of ``training="staged"``) on calibration + stdlib docstring sentences, then
prints the held-out cosine of that 4-layer exit and what an oracle choosing the best rows to
exit could reach, with full-depth rows counted at 0.995.
Run: HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/explore/early_exit_minilm_staged.py  (~40 min, 2 shared cores)
"""

from __future__ import annotations

import time

from torch import nn

from accelkit.techniques.distill import (
    SentenceDistillConfig,
    distill_sentence_encoder,
    make_layer_student,
    sentence_embeddings,
)
from accelkit.workloads.minilm import MiniLMWorkload, stdlib_docstring_sentences


def main() -> None:
    t0 = time.time()
    wl = MiniLMWorkload()
    teacher, tok = wl.build_model().eval(), wl.tokenizer
    calib = wl.calib_data()
    n_train = int(len(calib) * 0.6)
    sentences = calib[:n_train] + list(stdlib_docstring_sentences())
    targets = sentence_embeddings(teacher, tok, sentences)
    cfg = SentenceDistillConfig(keep_layers=(0, 1, 2, 3), epochs=3, lr=2e-4, dropout=False)
    prefix = distill_sentence_encoder(make_layer_student(teacher, (0, 1, 2, 3)), targets, tok, sentences, cfg)
    print(f"{time.time() - t0:.0f}s stage 1 done", flush=True)
    for name, data in (("calib-hold", calib[n_train:]), ("eval", wl.eval_data())):
        ref = sentence_embeddings(teacher, tok, data)
        cos = nn.functional.cosine_similarity(sentence_embeddings(prefix, tok, data), ref)
        print(name, "4-layer exit cosine mean", round(float(cos.mean()), 4))
        best = cos.sort(descending=True).values
        for frac in (0.5, 0.75):
            k = int(frac * len(best))
            overall = (best[:k].sum() + 0.995 * (len(best) - k)) / len(best)
            print(f"  oracle: best {frac:.0%} exit (mean {float(best[:k].mean()):.4f}) -> overall {float(overall):.4f}")


if __name__ == "__main__":
    main()
