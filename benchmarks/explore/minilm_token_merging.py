"""Experiment (issue 27): what token merging (ToMe-style bipartite matching; a merged token carries
its size into attention and into the mean pooling) costs minilm's embedding, before any runtime.

One sentence a call (no padding), fp32 eager, the 512 held-out pydoc sentences. Each plan merges a
share of a row's tokens (never [CLS] or [SEP]) after the given layers. Prints the share of
token-layers left (the linear layers' work) and cosine to the unmerged model (mean / worst).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/explore/minilm_token_merging.py
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from accelkit.workloads import get_workload  # noqa: E402

PLANS = {
    "after layer 1: 25%": {1: 0.25},
    "after layer 2: 25%": {2: 0.25},
    "after layer 2: 35%": {2: 0.35},
    "after layer 3: 35%": {3: 0.35},
    "after layers 1, 3: 15% each": {1: 0.15, 3: 0.15},
    "after layers 2, 3, 4: 20% each": {2: 0.2, 3: 0.2, 4: 0.2},
    "after layer 0: 20%": {0: 0.2},
}


def mergeable(length: int) -> int:
    """How many tokens of a row this long can merge: the even inner positions."""
    return len(range(1, length - 1)[0::2])


def merge(x: torch.Tensor, size: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge ``r`` tokens of ``x`` (T, D): inner even positions into their most similar inner odd
    position, as a size-weighted mean; the first and last tokens stay."""
    inner = torch.arange(1, x.shape[0] - 1)
    a, b = inner[0::2], inner[1::2]
    r = min(r, len(a))
    if r <= 0 or len(b) == 0:
        return x, size
    normed = F.normalize(x, dim=-1)
    best, partner = (normed[a] @ normed[b].T).max(1)
    src = best.argsort(descending=True)[:r]
    weighted, size = x * size[:, None], size.clone()
    into = weighted[b].index_add(0, partner[src], weighted[a[src]])
    size[b] = size[b].index_add(0, partner[src], size[a[src]])
    weighted[b] = into
    keep = torch.ones(x.shape[0], dtype=torch.bool)
    keep[a[src]] = False
    return weighted[keep] / size[keep][:, None], size[keep]


def main() -> None:
    torch.set_num_threads(2)
    wl = get_workload("minilm")
    bert = wl.build_model().eval()
    ids = wl.tokenizer(list(wl.eval_data()), truncation=True, max_length=256)["input_ids"]

    @torch.inference_mode()
    def embed(row: list[int], plan: dict[int, float]) -> torch.Tensor:
        x = bert.embeddings(input_ids=torch.tensor(row)[None])[0]
        size = torch.ones(x.shape[0])
        for i, layer in enumerate(bert.encoder.layer):
            # proportional attention: a key that stands for n tokens gets log(n) added to its scores
            out = layer(x[None], attention_mask=torch.log(size)[None, None, None, :])
            x = (out[0] if isinstance(out, tuple) else out)[0]
            if i in plan:
                x, size = merge(x, size, int(round(plan[i] * x.shape[0])))
        return (x * size[:, None]).sum(0) / size.sum()

    reference = torch.stack([embed(row, {}) for row in ids])
    tokens = sum(len(row) for row in ids)
    for name, plan in PLANS.items():
        cos = F.cosine_similarity(torch.stack([embed(row, plan) for row in ids]), reference)
        work = 0
        for row in ids:
            left = len(row)
            for i in range(len(bert.encoder.layer)):
                work += left
                if i in plan:
                    left -= min(int(round(plan[i] * left)), mergeable(left))
        print(f"{name:32s} token-layers {work / (len(bert.encoder.layer) * tokens):.3f}  "
              f"cosine {float(cos.mean()):.4f} / {float(cos.min()):.4f}", flush=True)


if __name__ == "__main__":
    main()
