"""Training step throughput: fp32 eager vs bf16 autocast vs bf16 + torch.compile + fused AdamW.

Every variant trains its own copy of the same initial model on the same batches; the steps are
timed interleaved (A B C A B C ...), the speed-up is the median of per-round ratios to fp32,
and the validation loss after the same number of steps sits beside it. MFU = achieved model
FLOP/s (FlopCounterMode on one training step) / this machine's measured GEMM peak.

    .venv/bin/python benchmarks/train_precision.py --workload gpt-mini --repeats 10
    .venv/bin/python benchmarks/train_precision.py --workload digits --batch 256
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from accelkit.measure import compare_interleaved
from accelkit.measure.roofline import measure_roofline
from accelkit.train import autocast_context
from accelkit.train.tasks import get_training_task

VARIANTS = {
    "fp32": dict(precision="fp32", compile=False, fused=False),
    "bf16": dict(precision="bf16", compile=False, fused=False),
    "bf16+compile+fused": dict(precision="bf16", compile=True, fused=True),
}


def _batches(dataset, batch: int, seed: int):
    """An endless stream of shuffled batches, the same for every variant (same seed)."""
    gen = torch.Generator().manual_seed(seed)
    x, y = dataset.tensors
    while True:
        perm = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x) - batch + 1, batch):
            idx = perm[start : start + batch]
            yield x[idx], y[idx]


def _make_step(model, loss_fn, precision: str, compile_: bool, fused: bool, lr: float):
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, fused=fused, foreach=None if fused else True)
    forward = torch.compile(model) if compile_ else model

    def step(inputs, targets) -> float:
        with autocast_context(precision, "cpu"):
            loss = loss_fn(forward(inputs), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


def _flops_per_step(model, loss_fn, inputs, targets) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    probe = copy.deepcopy(model)
    with FlopCounterMode(display=False) as counter:
        loss_fn(probe(inputs), targets).backward()
    return int(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="gpt-mini", choices=["gpt-mini", "digits"])
    parser.add_argument("--batch", type=int, default=None, help="default: 16 windows (gpt-mini), 256 images (digits)")
    parser.add_argument("--steps-per-call", type=int, default=2, help="training steps per timed call")
    parser.add_argument("--repeats", type=int, default=10, help="interleaved rounds")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    batch = args.batch or (16 if args.workload == "gpt-mini" else 256)
    names = [v.strip() for v in args.variants.split(",")]

    task = get_training_task(args.workload, seed=0)
    init_state = copy.deepcopy(task.model.state_dict())
    unit = task.throughput_unit
    models, steps, streams, losses = {}, {}, {}, {}
    for name in names:
        spec = VARIANTS[name]
        model = copy.deepcopy(task.model)
        model.load_state_dict(init_state)
        model.train()
        models[name] = model
        steps[name] = _make_step(model, task.loss_fn, spec["precision"], spec["compile"], spec["fused"], args.lr)
        streams[name] = _batches(task.dataset, batch, seed=1)
        losses[name] = []

    def call(name: str):
        def run() -> None:
            for _ in range(args.steps_per_call):
                x, y = next(streams[name])
                losses[name].append(steps[name](x, y))
        return run

    t0 = time.perf_counter()
    x0, y0 = next(_batches(task.dataset, batch, seed=1))
    items_per_step = x0.numel() if unit == "tokens" else x0.shape[0]
    flops = _flops_per_step(task.model, task.loss_fn, x0, y0)
    roof = measure_roofline(size=1024, repeats=3)
    # warm-up=2 calls: compile happens in the first one, autotuning settles in the second
    timings = compare_interleaved({n: call(n) for n in names}, baseline=names[0], repeats=args.repeats, warmup=2)
    n_steps = {n: len(v) for n, v in losses.items()}
    print(f"# {args.workload}: batch {batch}, {args.steps_per_call} steps/call, {args.repeats} interleaved rounds, "
          f"{items_per_step} {unit}/step, {flops / 1e9:.2f} GFLOP/step (fwd+bwd), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; roofline fp32 {roof.fp32_gflops:.0f} / bf16 {roof.bf16_gflops or 0:.0f} GFLOP/s")
    print(f"{'variant':<22} {unit + '/s':>12} {'speed-up':>9} {'val_loss':>9} {'train_loss':>10} {'MFU(fp32 peak)':>15} {'MFU(own peak)':>14}")
    for name in names:
        t = timings[name]
        per_call_s = t.p50_ms / 1e3
        rate = items_per_step * args.steps_per_call / per_call_s
        achieved = flops * args.steps_per_call / per_call_s / 1e9
        own_peak = roof.bf16_gflops if VARIANTS[name]["precision"] == "bf16" and roof.bf16_gflops else roof.fp32_gflops
        val = task.evaluate(models[name]).get("val_loss", float("nan"))
        tail = losses[name][-5:]
        print(f"{name:<22} {rate:>12,.0f} {t.speedup:>8.2f}x {val:>9.4f} {sum(tail) / len(tail):>10.4f} "
              f"{achieved / roof.fp32_gflops:>14.1%} {achieved / own_peak:>13.1%}")
    print(f"# every variant trained {sorted(set(n_steps.values()))} steps from the same init on the same batches; "
          f"wall {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
