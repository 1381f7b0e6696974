"""Experiment (issue 24): the time to first token of static-cache-compile against model.generate on
generate_llama.py's trained Llama and held-out prompts, and where the prompt pass spends it.

    HF_HUB_OFFLINE=1 PYTHONPATH=src .venv/bin/python benchmarks/explore/first_token.py [--batch 1]

Prints ``time_to_first_token`` of both generators twice (bench's interleaved measurement: p50 and
the median ratio to generate's on the same batches), then, alone, the medians of one prompt pass
over a new StaticCache (as the lean loop runs it), the same forward over the dynamic cache, and
generate writing one token. Under ``.venv-peers`` (transformers 4) pass ``ACCELKIT_CACHE`` where
generate_llama.py's models are.
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

from accelkit.techniques.static_cache import StaticCacheGenerator  # noqa: E402
from accelkit.workloads.generation import generate_tokens  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(2)
    _, wl = generate_llama.heldout_workload(Path(tempfile.mkdtemp()))
    model = wl.build_model()
    settings = wl.default_settings(args.batch, "cpu")
    texts = list(wl.eval_data())
    generators = {"default": (model, settings), "static-cache-compile": (StaticCacheGenerator(model), settings)}
    for _ in range(2):
        found = wl.time_to_first_token(generators, texts)
        print("  ".join(f"{name}: p50 {v['p50']:.2f} ms, {v['vs_first']:.3f}x default's" for name, v in found.items()))
    from transformers import StaticCache

    lean = generators["static-cache-compile"][0]
    batches = [b for b, _ in wl.batches(texts, settings)][:24]
    pad = wl.tokenizer.pad_token_id

    def static_pass(batch):
        ids, mask = batch["input_ids"], batch["attention_mask"]
        length = ids.shape[1]
        cache = StaticCache(config=model.config, max_cache_len=64)
        full = torch.zeros(ids.shape[0], 64, dtype=mask.dtype)
        full[:, :length] = mask
        full[:, length] = 1
        model(input_ids=ids, attention_mask=full, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
              cache_position=torch.arange(length), use_cache=True, **lean._last_logits, **{lean._cache_arg: cache})

    runs = {"prompt pass over a new StaticCache": static_pass,
            "the same forward over the dynamic cache": lambda b: model(**b, use_cache=True, **lean._last_logits),
            "generate writing one token": lambda b: generate_tokens(model, b, 1, pad)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    with torch.inference_mode():
        for batch in batches[:4]:
            for run in runs.values():
                run(batch)
        for batch in batches:
            for name, run in runs.items():
                start = time.perf_counter()
                run(batch)
                times[name].append((time.perf_counter() - start) * 1e3)
    for name, spent in times.items():
        print(f"{name}: {statistics.median(spent):.2f} ms (median of {len(spent)})")


if __name__ == "__main__":
    main()
