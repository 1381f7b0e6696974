"""Experiment (issue 24): continuous batching on accelkit's stateful OpenVINO graph. Many prompts
written greedily with a fixed number of rows in flight, a waiting prompt taking the place of each
row that ends, against ``openvino-generate`` (which drops a finished row from its batch but
refills nothing), on generate_llama.py's trained Llama: 256 prompts, stop at ".", 64 new tokens
at most, 64 rows.

Once ``refill_at`` rows are free, waiting prompts are read in a second infer request and their
cache rows spliced into the running one through OpenVINO's state API (``query_state``; left-padded
to a common length, the padding masked), so steps keep computing full batches. Each prompt gets
the tokens ``generate`` writes for it alone: masked cache columns add exactly nothing to
attention. Each refill copies the whole cache out and back in.

    ACCELKIT_CACHE=~/.cache/accelkit HF_HUB_OFFLINE=1 PYTHONPATH=src \
        .venv/bin/python benchmarks/explore/ov_continuous_batching.py [--rounds 5]

Prints, per row, the median time of a pass over the prompts and the median of pair ratios against
``openvino-generate``, whether every prompt got the tokens ``generate`` writes for it alone, and
where one refill's time goes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from accelkit.errors import ConfigError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import generate_llama  # noqa: E402


def _left_pad(array: np.ndarray, width: int, axis: int) -> np.ndarray:
    """``array`` with zeros before its columns along ``axis`` up to ``width``."""
    short = width - array.shape[axis]
    if short <= 0:
        return array
    pad = [(0, 0)] * array.ndim
    pad[axis] = (short, 0)
    return np.pad(array, pad)


class _Batch:
    """The rows in flight: the prompt each belongs to, its row in the request's cache, its last
    token (not yet in the cache), its next position, the mask over its cache columns and how many
    tokens it wrote."""

    def __init__(self) -> None:
        self.prompt = np.zeros(0, dtype=np.int64)
        self.cache_row = np.zeros(0, dtype=np.int32)
        self.token = np.zeros((0, 1), dtype=np.int64)
        self.position = np.zeros((0, 1), dtype=np.int64)
        self.mask = np.zeros((0, 0), dtype=np.int64)
        self.count = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.prompt)

    def keep(self, rows: np.ndarray) -> None:
        for name in ("prompt", "cache_row", "token", "position", "mask", "count"):
            setattr(self, name, getattr(self, name)[rows])


def decode_continuous(compiled: Any, request: Any, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                      batch_size: int, *, eos_token_id: int | Sequence[int] | None, logits: Any,
                      refill_at: int | None = None) -> list[list[int]]:
    """Greedy tokens after each of ``prompts`` (token ids; they enter in the order given), up to
    ``max_new_tokens`` or EOS (kept), ``batch_size`` rows in flight on ``request`` (an infer
    request of ``compiled``, the graph of ``accelkit.export.openvino_lm``). ``logits(outputs)``:
    each row's last logits from a call's outputs; ``refill_at``: how many free rows start a
    refill (default: an eighth of the batch)."""
    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens={max_new_tokens}: expected a positive number of tokens to write")
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size}: expected a positive integer")
    if any(len(p) == 0 for p in prompts):
        raise ConfigError("a prompt has no tokens; drop empty prompts or let the tokenizer add its BOS token")
    eos = None if eos_token_id is None else np.asarray(
        [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id), dtype=np.int64)
    refill_at = max(1, batch_size // 8) if refill_at is None else refill_at
    written: list[list[int]] = [[] for _ in prompts]
    waiting = deque(range(len(prompts)))
    reader = compiled.create_infer_request()  # reads waiting prompts beside the running batch
    batch = _Batch()
    while waiting or len(batch):
        free = batch_size - len(batch)
        if waiting and (free >= refill_at or not len(batch)):
            entering = [waiting.popleft() for _ in range(min(free, len(waiting)))]
            _admit(request, reader, batch, entering, prompts, logits)
            wrote = np.arange(len(batch) - len(entering), len(batch))
        else:
            # the beam_idx gather drops the cache rows of rows that ended since the last call
            mask = np.concatenate([batch.mask, np.ones((len(batch), 1), np.int64)], axis=1)
            out = request.infer({"input_ids": batch.token, "attention_mask": mask, "position_ids": batch.position,
                                 "beam_idx": batch.cache_row})
            batch.mask, batch.cache_row = mask, np.arange(len(batch), dtype=np.int32)
            batch.token = logits(out).argmax(-1)[:, None].astype(np.int64)
            batch.position, batch.count = batch.position + 1, batch.count + 1
            wrote = np.arange(len(batch))
        for row in wrote:
            written[batch.prompt[row]].append(int(batch.token[row, 0]))
        ended = batch.count >= max_new_tokens
        if eos is not None:
            ended |= np.isin(batch.token[:, 0], eos)
        if ended.any():
            batch.keep(np.flatnonzero(~ended))
    return written


def _place(cache: np.ndarray, rows: np.ndarray, which: np.ndarray, first: int, offset: int) -> None:
    """Copy cache ``rows[which]`` into ``cache`` from row ``first``, their columns shifted right by
    ``offset`` (negative: their first ``-offset`` columns left out)."""
    skip = max(0, -offset)
    for i, row in enumerate(which):
        cache[first + i, :, offset + skip:] = rows[row, :, skip:]


def _admit(request: Any, reader: Any, batch: _Batch, entering: list[int], prompts: Sequence[Sequence[int]],
           logits: Any) -> None:
    """Read the prompts ``entering`` on ``reader`` (left-padded, one call), then set ``request``'s
    cache to the rows in flight followed by the entering ones, left-padded to one length, without
    the columns no row reads; the entering rows' first tokens become their last tokens."""
    import openvino as ov

    longest = max(len(prompts[i]) for i in entering)
    ids = np.zeros((len(entering), longest), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, i in enumerate(entering):
        ids[row, longest - len(prompts[i]):] = prompts[i]
        mask[row, longest - len(prompts[i]):] = 1
    positions = np.clip(mask.cumsum(-1) - 1, 0, None)
    reader.reset_state()
    first = logits(reader.infer({"input_ids": ids, "attention_mask": mask, "position_ids": positions,
                                 "beam_idx": np.arange(len(entering), dtype=np.int32)}))
    entering_cache = {state.name: state.state.data for state in reader.query_state()}
    width = max(batch.mask.shape[1], longest)
    merged_mask = np.concatenate([_left_pad(batch.mask, width, 1), _left_pad(mask, width, 1)])
    start = int(np.argmax(merged_mask.any(0)))  # columns before it belonged to rows that ended
    for state in request.query_state():
        entering_rows = entering_cache[state.name]
        # (rows, heads, columns, head size): each part copied once, into its place
        cache = np.zeros((len(merged_mask), entering_rows.shape[1], width - start, entering_rows.shape[3]),
                         dtype=entering_rows.dtype)
        if len(batch):
            running = state.state.data
            _place(cache, running, batch.cache_row, 0, width - running.shape[2] - start)
        _place(cache, entering_rows, np.arange(len(entering)), len(batch), width - longest - start)
        state.state = ov.Tensor(cache)
    batch.mask = np.ascontiguousarray(merged_mask[:, start:])
    batch.prompt = np.concatenate([batch.prompt, np.asarray(entering, dtype=np.int64)])
    batch.cache_row = np.arange(len(batch.prompt), dtype=np.int32)
    batch.token = np.concatenate([batch.token, first.argmax(-1)[:, None].astype(np.int64)])
    batch.position = np.concatenate([batch.position, positions[:, -1:] + 1])
    batch.count = np.concatenate([batch.count, np.ones(len(entering), dtype=np.int64)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--stop", default=".")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(2)
    from transformers import AutoTokenizer

    from accelkit.techniques.openvino_generate import openvino_generator

    where = Path(tempfile.mkdtemp())
    target, wl = generate_llama.heldout_workload(where)
    tok = AutoTokenizer.from_pretrained(target)
    tok.padding_side, tok.pad_token = "left", tok.pad_token or tok.eos_token
    prompts = generate_llama.prompts_file(128, 8, where).read_text().splitlines()
    model = wl.build_model()
    lm = openvino_generator(model)
    stop = tok.encode(args.stop, add_special_tokens=False)[-1]
    ids = [tok(p)["input_ids"] for p in prompts]
    chunks = [tok(prompts[i:i + 64], return_tensors="pt", padding=True, return_token_type_ids=False)
              for i in range(0, len(prompts), 64)]

    def dropping() -> None:
        for enc in chunks:
            lm.generate(**enc, max_new_tokens=64, do_sample=False, eos_token_id=stop, pad_token_id=0)

    def continuous(refill_at: int):
        return lambda: decode_continuous(lm._compiled, lm._request, ids, 64, 64, eos_token_id=stop,
                                         logits=lm._last, refill_at=refill_at)

    with torch.inference_mode():
        alone = [model.generate(torch.tensor([p]), max_new_tokens=64, do_sample=False, eos_token_id=stop,
                                pad_token_id=0)[0, len(p):].tolist() for p in ids]
    print("continuous batching writes each prompt's own generate tokens:", continuous(8)() == alone)
    rows = {"openvino-generate (finished rows dropped)": dropping, **{f"continuous, refill at {r} free rows":
                                                                       continuous(r) for r in (8, 16, 32)}}
    times: dict[str, list[float]] = {name: [] for name in rows}
    for round_ in range(args.rounds + 1):  # the first round is untimed
        for name, run in rows.items():
            start = time.perf_counter()
            run()
            if round_:
                times[name].append(time.perf_counter() - start)
    base = times["openvino-generate (finished rows dropped)"]
    for name, spent in times.items():
        pairs = [b / s for b, s in zip(base, spent, strict=True)]
        print(f"{name:42s} {statistics.median(spent):6.3f} s  {statistics.median(pairs):5.2f}x "
              f"(pairs {min(pairs):.2f}-{max(pairs):.2f})")
    _refill_cost(lm)


def _refill_cost(lm: Any) -> None:
    """Where one refill's time goes: 64 rows of 60 cache columns, 8 prompts of 12 tokens entering."""
    import openvino as ov

    request, reader = lm._request, lm._compiled.create_infer_request()
    ids = np.random.default_rng(0).integers(5, 1000, (64, 64)).astype(np.int64)

    def read(req: Any, rows: int, length: int) -> None:
        req.reset_state()
        req.infer({"input_ids": ids[:rows, :length], "attention_mask": np.ones((rows, length), np.int64),
                   "position_ids": np.tile(np.arange(length), (rows, 1)), "beam_idx": np.arange(rows, dtype=np.int32)})

    def step(length: int) -> None:
        request.infer({"input_ids": ids[:, :1], "attention_mask": np.ones((64, length + 1), np.int64),
                       "position_ids": np.full((64, 1), length), "beam_idx": np.arange(64, dtype=np.int32)})

    read(request, 64, 60)
    for _ in range(3):
        marks = [time.perf_counter()]
        read(reader, 8, 12)
        marks.append(time.perf_counter())
        states = request.query_state()
        copies = [np.array(s.state.data) for s in states]
        marks.append(time.perf_counter())
        for state, copy in zip(states, copies, strict=True):
            state.state = ov.Tensor(copy)
        marks.append(time.perf_counter())
        step(60)
        marks.append(time.perf_counter())
        step(61)
        marks.append(time.perf_counter())
        read(request, 64, 60)
        spent = [f"{(b - a) * 1e3:.1f}" for a, b in zip(marks, marks[1:], strict=False)]
        print("refill, ms: read 8 prompts {}, cache out {}, cache in {}, the step after {}, a step {}".format(*spent))


if __name__ == "__main__":
    main()
