"""One worker's job, the same in-process and in a Ray actor: read a block, run the model on its
items, write its part, and return the block's counts (or the bad row that stops the run)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from accelkit.batch_run.blocks import Block, Corpus
from accelkit.batch_run.model_runner import ShippedRunner
from accelkit.batch_run.parts import write_part

__all__ = ["BAD_ROW_EXAMPLES", "BlockWorker"]

BAD_ROW_EXAMPLES = 5  # bad rows kept per block (with their reason) for the summary


class BlockWorker:
    """Loads the model once; ``run`` turns one block into its part."""

    def __init__(self, model_dir: str, corpus: Corpus, output: str, *, threads: int, batch_size: int,
                 on_bad_row: str, max_new_tokens: int | None = None, seed: int | None = None) -> None:
        self.corpus = corpus
        self.seed = seed
        self.output = Path(output)
        self.on_bad_row = on_bad_row
        self.runner = ShippedRunner(model_dir, threads, batch_size, max_new_tokens)

    def run(self, block: Block) -> dict[str, Any]:
        """The block's counts, after its part is written; with ``on_bad_row="fail"`` a block with
        a bad row writes nothing and returns {"error": one line naming the row}."""
        start = time.perf_counter()
        rows = self.corpus.read_block(block)
        if rows.bad and self.on_bad_row == "fail":
            first = rows.bad[0]
            return {"block": block.index, "error": f"{block.file} row {first['row']} is bad ({first['why']}); "
                                                   "fix it, or pass --on-bad-row skip to count and skip bad rows"}
        # a block's draws follow from its place in the input, not from which worker ran it or when
        seed = None if self.seed is None else self.seed + block.first_row
        table = self.runner.table(rows.ids, rows.texts, ids_are_given=self.corpus.id_column is not None, seed=seed)
        stats = {"block": block.index, "rows": block.rows, "items": len(rows.texts), "blank_rows": rows.blank,
                 "bad_rows": len(rows.bad), "bad_row_examples": rows.bad[:BAD_ROW_EXAMPLES]}
        write_part(self.output, block.index, table, stats)
        # the worker's process id: which actor ran it (and what a test kills)
        return {**stats, "seconds": time.perf_counter() - start, "worker": os.getpid()}
