"""Experiment (issue 15, not kept): options on the bf16 + compile + fused AdamW gpt-mini step (large
shape, batch 8, 2 threads), each its own model from the same init, 6 interleaved rounds of 2 steps.

    .venv/bin/python benchmarks/explore/train_step_options.py base foreach-clip bf16-params
    .venv/bin/python benchmarks/explore/train_step_options.py base max-autotune
    .venv/bin/python benchmarks/explore/train_step_options.py bf16-params-loop-clip bf16-params-no-autocast
    .venv/bin/python benchmarks/explore/train_step_options.py bf16-params-loop-clip bf16-params-cpp-wrapper bf16-params-flash
"""

import copy
import statistics
import sys
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from accelkit.train.bench import _batches
from accelkit.train.tasks import get_training_task

torch.set_num_threads(2)
task = get_training_task("gpt-mini", size="large")
init = copy.deepcopy(task.model.state_dict())


def make(mode=None, foreach_clip=False, bf16_params=False, autocast=True, cpp_wrapper=False, flash=False):
    m = copy.deepcopy(task.model)
    m.load_state_dict(init)
    m.train()
    if bf16_params:
        m.to(torch.bfloat16)
    opt = torch.optim.AdamW(m.parameters(), lr=2e-3, fused=True)

    def fwd(x):
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION if flash else SDPBackend.MATH):
            return m(x)

    import torch._inductor.config as inductor_config

    inductor_config.cpp_wrapper = cpp_wrapper  # read when the graph compiles: at the first step
    f = torch.compile(fwd, mode=mode)

    def step(x, y):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = task.loss_fn(f(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0, foreach=foreach_clip or None)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


configs = {"base": {}, "foreach-clip": {"foreach_clip": True},
           "bf16-params": {"foreach_clip": True, "bf16_params": True},
           "bf16-params-loop-clip": {"bf16_params": True},
           "bf16-params-no-autocast": {"bf16_params": True, "autocast": False},
           "bf16-params-cpp-wrapper": {"bf16_params": True, "cpp_wrapper": True},
           "bf16-params-flash": {"bf16_params": True, "flash": True},
           "max-autotune": {"foreach_clip": True, "mode": "max-autotune-no-cudagraphs"}}
chosen = sys.argv[1:] or list(configs)
steps, streams = {}, {}
for name in chosen:
    steps[name], streams[name] = make(**configs[name]), _batches(task.dataset, 8, 1)
    for _ in range(3):
        steps[name](*next(streams[name]))
times = {n: [] for n in chosen}
for _ in range(6):
    for name in chosen:
        start = time.perf_counter()
        for _ in range(2):
            steps[name](*next(streams[name]))
        times[name].append((time.perf_counter() - start) / 2)
for name in chosen:
    t = statistics.median(times[name])
    print(f"{name:15s} {t * 1e3:7.1f} ms/step  {1024 / t:6.0f} tokens/s")
