"""Experiment (issue 27, unpadding): minilm with its linear layers, layer norms and feed-forward run
on the real tokens only, gathered out of the padded batch once, gathered back into (batch, length)
(pads reading a zero row) just around each layer's attention. Exported to ONNX, NNCF int8 as `openvino-int8` does, one
OpenVINO request on 2 threads, timed against the padded graph on the 512 held-out pydoc sentences
in length-sorted batches (interleaved rounds), with the cosine of the mean-pooled embeddings.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/explore/minilm_unpadded_graph.py [--rounds 5] [--batch 32]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import sys  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from minilm_int8_setup import minilm_int8  # noqa: E402

from accelkit.export.onnx import export_onnx  # noqa: E402


class Unpadded(nn.Module):
    """A BERT encoder whose per-token work runs on (real tokens, width); returns the last hidden
    state as (batch, length, width), zeros at padding."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert
        self.heads = bert.config.num_attention_heads

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        b, t = input_ids.shape
        flat = attention_mask.reshape(-1)
        keep = torch.nonzero(flat).squeeze(1)
        # where each (row, position) slot finds its token among the kept ones; pads read a zero row
        slots = torch.where(flat > 0, torch.cumsum(flat, 0) - 1, keep.shape[0])
        x = self.bert.embeddings(input_ids=input_ids).reshape(b * t, -1).index_select(0, keep)
        c = x.shape[-1]
        d = c // self.heads
        bias = (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        zero = torch.zeros(1, c, dtype=x.dtype)

        def padded(y: torch.Tensor) -> torch.Tensor:  # (kept, c) -> (b, heads, t, d), a gather
            return torch.cat([y, zero]).index_select(0, slots).reshape(b, t, self.heads, d).transpose(1, 2)

        for layer in self.bert.encoder.layer:
            sa = layer.attention.self
            q, k, v = padded(sa.query(x)), padded(sa.key(x)), padded(sa.value(x))
            scores = torch.matmul(q, k.transpose(-1, -2)) * d ** -0.5 + bias
            ctx = torch.matmul(scores.softmax(-1), v).transpose(1, 2).reshape(b * t, c).index_select(0, keep)
            x = layer.attention.output.LayerNorm(layer.attention.output.dense(ctx) + x)
            x = layer.output.LayerNorm(layer.output.dense(layer.intermediate(x)) + x)
        return torch.cat([x, zero]).index_select(0, slots).reshape(b, t, c)


def mean_pooled(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(np.float32)
    return (hidden * m).sum(1) / m.sum(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    setup = minilm_int8(args.batch)
    bert, example, feeds = setup.model, setup.example, setup.feeds()
    with torch.no_grad():
        ref = [mean_pooled(bert(**{k: torch.from_numpy(v) for k, v in f.items()}).last_hidden_state.numpy(),
                           f["attention_mask"]) for f in feeds]
    graphs = {"padded": export_onnx(bert, example), "unpadded": export_onnx(Unpadded(bert).eval(), example)}
    requests = {name: setup.int8_request(g) for name, g in graphs.items()}
    for name, request in requests.items():
        got = [mean_pooled(next(iter(request.infer(f).values())), f["attention_mask"]) for f in feeds]
        cos = np.concatenate([np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
                              for a, b in zip(got, ref, strict=True)])
        print(f"{name:9s} int8 cosine to fp32: mean {cos.mean():.4f}, worst {cos.min():.4f}")
    times: dict[str, list[float]] = {n: [] for n in requests}
    for _ in range(args.rounds):
        for name, request in requests.items():
            start = time.perf_counter()
            for f in feeds:
                request.infer(f)
            times[name].append(time.perf_counter() - start)
    ratios = [p / u for p, u in zip(times["padded"], times["unpadded"], strict=True)]
    for name in requests:
        print(f"{name:9s} {len(setup.wl.eval_data()) / statistics.median(times[name]):7.0f} sentences/s (infer only)")
    print(f"unpadded / padded: {statistics.median(ratios):.3f}x (pairs {', '.join(f'{r:.3f}' for r in ratios)})")


if __name__ == "__main__":
    main()
