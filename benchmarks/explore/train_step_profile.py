"""Experiment (issue 15): where a large gpt-mini training step spends its time (torch.profiler over
3 steps after warm-up, 2 threads), for one training variant of accelkit.train.bench.

    .venv/bin/python benchmarks/explore/train_step_profile.py bf16+compile+fused
"""

import sys
import time

import torch

from accelkit.train.bench import TRAIN_VARIANTS, _batches, _make_step
from accelkit.train.tasks import get_training_task

torch.set_num_threads(2)
name = sys.argv[1] if len(sys.argv) > 1 else "bf16+compile+fused"
task = get_training_task("gpt-mini", size="large")
step = _make_step(task.model, task.loss_fn, TRAIN_VARIANTS[name], 2e-3)
batches = _batches(task.dataset, 8, 1)
for _ in range(4):
    step(*next(batches))
start = time.perf_counter()
for _ in range(6):
    step(*next(batches))
print(f"{name}: {(time.perf_counter() - start) / 6 * 1e3:.0f} ms a step")
with torch.profiler.profile() as prof:
    for _ in range(3):
        step(*next(batches))
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
