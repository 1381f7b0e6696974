"""``run_batch``: a shipped model over a corpus, block by block, on Ray Data or in-process, with
nothing lost and nothing twice: every block's part is written whole, ``resume`` skips the blocks
whose part exists, and the summary (beside the parts) counts every row of the input."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelkit._atomic import atomic_write_bytes
from accelkit._threads import available_cpus
from accelkit.batch_run.blocks import Block, Corpus, plan_blocks
from accelkit.batch_run.model_runner import check_model_folder, check_run_options
from accelkit.batch_run.parts import SUMMARY_FILE, prepare_output
from accelkit.batch_run.progress import ProgressLine
from accelkit.config import Config
from accelkit.errors import ConfigError, DataFileError

__all__ = ["ENGINES", "RunConfig", "run_batch"]

ENGINES = ("local", "ray")
_BAD_ROW_POLICIES = ("skip", "fail")
_SUMMARY_EXAMPLES = 20  # bad rows listed in the summary (all of them are counted)


@dataclass
class RunConfig(Config):
    """How a corpus run reads, runs and writes. ``engine=None``: Ray when installed, else local.
    ``threads``: per Ray actor (default 1), or for the in-process engine (default every core);
    ``actors``: Ray actors (default the cluster's CPUs / threads); ``max_new_tokens``: tokens a
    text-generation model writes after each prompt (default: the number it was measured with);
    ``seed``: a text-generation model samples (its own temperature, top-k, top-p) instead of
    decoding greedily, each batch seeded from ``seed`` and its place in the input, so the same seed
    writes the same text on either engine and after a resume."""

    engine: str | None = None
    text_column: str | None = None
    id_column: str | None = None
    block_size: int = 1000
    batch_size: int = 32
    on_bad_row: str = "skip"
    resume: bool = False
    overwrite: bool = False
    address: str | None = None
    actors: int | None = None
    threads: int | None = None
    max_new_tokens: int | None = None
    seed: int | None = None
    version: int = 1

    def __post_init__(self) -> None:
        if self.engine is not None and self.engine not in ENGINES:
            raise ConfigError(f"--engine {self.engine!r}: expected one of {', '.join(ENGINES)}")
        if self.on_bad_row not in _BAD_ROW_POLICIES:
            raise ConfigError(f"--on-bad-row {self.on_bad_row!r}: expected skip or fail")
        for name in ("block_size", "batch_size", "actors", "threads", "max_new_tokens"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name}={value!r}: expected a positive integer")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            raise ConfigError(f"--seed {self.seed!r}: expected a whole number >= 0")
        if self.engine == "local" and (self.address or self.actors):
            raise ConfigError("--address and --actors are for --engine ray; drop them or pass --engine ray")


def _digest(paths: list[Path]) -> str:
    """What identifies the input between a run and its resume: each file's name, size and mtime."""
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _run_record(model_dir: Path, corpus: Corpus, blocks: list[Block], block_size: int,
                max_new_tokens: int | None, seed: int | None) -> dict[str, Any]:
    files = sorted({Path(b.file) for b in blocks}) or [Path(corpus.path)]
    return {"schema": "accelkit.run/1", "input": corpus.path, "input_digest": _digest(files),
            "format": corpus.fmt, "text_column": corpus.text_column, "id_column": corpus.id_column,
            "model": str(model_dir), "model_plan": _digest([model_dir / "plan.json"]),
            "block_size": block_size, "blocks": len(blocks), "max_new_tokens": max_new_tokens,
            # only when sampling: a greedy run's record stays as earlier versions wrote it, so they resume
            **({"seed": seed} if seed is not None else {})}


def run_batch(model_dir: str | os.PathLike, input: str | os.PathLike, output: str | os.PathLike,
              config: RunConfig | None = None, *, console: Any = None,
              on_block: Callable[[dict[str, Any]], None] | None = None, **options: Any) -> dict[str, Any]:
    """Run the shipped model folder ``model_dir`` over ``input`` (.txt, .jsonl, .csv/.tsv, Parquet
    file or folder) and write Parquet parts into the folder ``output``; returns the summary also
    written there as ``_summary.json``. ``options``: RunConfig's fields (or pass ``config``).
    ``console``: a rich Console for the progress line (drawn only on a terminal); ``on_block``:
    called with each finished block's counts. Bad input raises an AccelkitError with one line."""
    from rich.console import Console

    from accelkit.batch_run.ray_engine import ray_available, require_ray

    if config is not None and options:
        raise ConfigError(f"run_batch got config= and {sorted(options)}; put those fields in the RunConfig")
    cfg = config if config is not None else RunConfig(**options)
    engine = cfg.engine or ("ray" if ray_available() else "local")
    if engine == "ray":
        require_ray()
    model_dir, out = Path(model_dir).resolve(), Path(output).resolve()
    check_run_options(check_model_folder(model_dir), cfg.max_new_tokens, cfg.seed)
    corpus, blocks = plan_blocks(input, cfg.block_size, text_column=cfg.text_column, id_column=cfg.id_column)
    threads = cfg.threads or (1 if engine == "ray" else available_cpus())
    started = False
    if engine == "ray":  # before the output folder is touched: an unreachable cluster changes nothing
        from accelkit.batch_run.ray_engine import connect

        started = connect(cfg.address, available_cpus())
    try:
        done = prepare_output(out, _run_record(model_dir, corpus, blocks, cfg.block_size, cfg.max_new_tokens, cfg.seed),
                              resume=cfg.resume, overwrite=cfg.overwrite)
        todo = [b for b in blocks if b.index not in done]
        worker_args = {"model_dir": str(model_dir), "corpus": corpus, "output": str(out), "threads": threads,
                       "batch_size": cfg.batch_size, "on_bad_row": cfg.on_bad_row,
                       "max_new_tokens": cfg.max_new_tokens, "seed": cfg.seed}
        finished: dict[int, dict] = {}
        line = ProgressLine(console or Console(stderr=True), sum(b.rows for b in todo))

        def on_result(result: dict[str, Any]) -> None:
            if "error" in result:
                raise DataFileError(result["error"])
            finished[int(result["block"])] = result
            line.advance(int(result["rows"]), int(result["items"]))
            if on_block is not None:
                on_block(result)

        start = time.perf_counter()
        actors = 1
        with line:
            if engine == "local" and todo:
                from accelkit.batch_run.local_engine import run_local

                run_local(worker_args, todo, on_result)
            elif todo:
                from accelkit.batch_run.ray_engine import cluster_cpus, run_ray

                cpus, asked = cluster_cpus(), (cfg.actors or 1) * threads
                if asked > cpus:  # Ray would wait for those CPUs forever
                    raise ConfigError(f"{cfg.actors or 1} actors × {threads} threads need {asked} CPUs; the Ray "
                                      f"cluster has {cpus}: pass fewer --actors or --threads")
                actors = max(1, min(cfg.actors or cpus // threads, len(todo)))
                run_ray(worker_args, todo, on_result, actors=actors, threads=threads)
    finally:
        if started:
            import ray

            ray.shutdown()
    wall = time.perf_counter() - start
    summary = _summary(blocks, {**done, **finished}, finished, wall, engine, actors, threads)
    summary.update(model=str(model_dir), input=corpus.path, output=str(out))
    atomic_write_bytes(out / SUMMARY_FILE, json.dumps(summary, indent=1).encode())
    return summary


def _summary(blocks: list[Block], stats: dict[int, dict], finished: dict[int, dict], wall: float,
             engine: str, actors: int, threads: int) -> dict[str, Any]:
    """Counts over every block's part (resumed ones included) and rates over this run's."""
    missing = [b.index for b in blocks if b.index not in stats]
    if missing:  # an engine that returned without every block is a bug, never a partial success
        raise RuntimeError(f"blocks {missing[:5]} produced no part; run again with --resume")
    total = {k: sum(int(s[k]) for s in stats.values()) for k in ("rows", "items", "blank_rows", "bad_rows")}
    examples = [e for i in sorted(stats) for e in stats[i]["bad_row_examples"]][:_SUMMARY_EXAMPLES]
    items_now = sum(int(s["items"]) for s in finished.values())
    rate = items_now / wall if wall > 0 else 0.0
    return {"schema": "accelkit.run-summary/1", **total, "bad_row_examples": examples,
            "blocks": len(blocks), "blocks_resumed": len(blocks) - len(finished), "engine": engine,
            "actors": actors, "threads_per_actor": threads, "items_this_run": items_now,
            "wall_s": round(wall, 3), "items_per_s": round(rate, 2),
            "items_per_s_per_actor": round(rate / max(actors, 1), 2)}
