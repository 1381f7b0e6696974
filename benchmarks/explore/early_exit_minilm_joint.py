"""Exploration (issue 7): minilm early exit with the backbone trained jointly with every exit.

Run: HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/explore/early_exit_minilm_joint.py 1,2,3,4 2 1e-4 32
(args: exit_after, joint epochs, joint lr, batch size). ~45 min on 2 shared cores. Prints the
calibration result and curve, held-out cosine and layers saved, and each exit's held-out cosine.
"""

from __future__ import annotations

import copy
import json
import sys
import time

import torch
from torch import nn

from accelkit.techniques.early_exit import EarlyExitConfig, build_early_exit, collect_exit_outputs
from accelkit.workloads.base import RunSettings
from accelkit.workloads.minilm import MiniLMWorkload, stdlib_docstring_sentences


def main() -> None:
    exit_after = [int(x) for x in sys.argv[1].split(",")]
    epochs, lr, batch_size = int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    t0 = time.time()
    wl = MiniLMWorkload()
    base = wl.build_model().eval()
    cfg = EarlyExitConfig(criterion="stability", shift_augment=False, training="joint", exit_after=exit_after,
                          joint_epochs=epochs, joint_lr=lr)
    wrapped = build_early_exit(
        copy.deepcopy(base), wl, cfg, max_quality_drop=0.015, train_fraction=0.6, batch_size=batch_size,
        use_cache=False, progress=lambda m: print(f"{time.time() - t0:.0f}s", m, flush=True),
        extra_train=list(stdlib_docstring_sentences()),
    )
    details = wrapped.accelkit_details
    print("calib", json.dumps(details["calibration"]), flush=True)
    for point in details["tradeoff_curve"][::3]:
        print(point)
    settings = RunSettings(batch_size=32, padding="dynamic")
    batches = [inputs for inputs, _ in wl.batches(wl.eval_data(), settings)]
    wrapped.reset_stats()
    with torch.no_grad():
        ref = torch.cat([wl.forward(base, b) for b in batches])
        out = torch.cat([wl.forward(wrapped, b) for b in batches])
    cos = nn.functional.cosine_similarity(out, ref)
    details = wrapped.accelkit_details
    print("EVAL cosine", float(cos.mean()), float(cos.min()), "layers saved", details["layers_saved_measured"],
          [h["rows"] for h in details["exit_histogram"]], f"{time.time() - t0:.0f}s")
    outs, final = collect_exit_outputs(wrapped, batches)
    print("per-exit eval cosine", [round(float(nn.functional.cosine_similarity(o, ref).mean()), 4) for o in outs],
          "final", float(nn.functional.cosine_similarity(final, ref).mean()))


if __name__ == "__main__":
    main()
