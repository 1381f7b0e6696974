"""Experiment (issue 27, sequence packing): how much of MiniLM's work on the 512 held-out pydoc
sentences is padding when batches are length-sorted and padded to their longest sentence, as the
OpenVINO plans run them: the share of pad tokens (what packing saves in the linear layers) and of
attention score entries (length squared per row) at each batch size. No timing.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/explore/minilm_padding.py [--batches 8,32,128]
"""

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from accelkit.workloads import get_workload  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", default="8,32,128")
    args = parser.parse_args()
    wl = get_workload("minilm")
    lengths = sorted(len(ids) for ids in wl.tokenizer(list(wl.eval_data()), truncation=True, max_length=128)["input_ids"])
    print(f"{len(lengths)} sentences, mean {sum(lengths) / len(lengths):.1f} tokens (special tokens included)")
    for size in (int(b) for b in args.batches.split(",")):
        batches = [lengths[i:i + size] for i in range(0, len(lengths), size)]
        padded = sum(len(b) * max(b) for b in batches)
        scores = sum(len(b) * max(b) ** 2 for b in batches)
        print(f"batch {size:4d}: pad tokens {1 - sum(lengths) / padded:6.1%}, "
              f"pad attention entries {1 - sum(n * n for n in lengths) / scores:6.1%}")


if __name__ == "__main__":
    main()
