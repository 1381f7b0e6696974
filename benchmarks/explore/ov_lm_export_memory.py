"""Experiment (issue 24): the process memory ``export_stateful_lm`` leaves behind and peaks at, on a
random 156M-parameter Llama (1,024 wide, 8 layers, vocabulary 32,000; 624 MB of fp32 weights), and
a check that the exported graph still compiles, runs (largest difference to the torch model's last
logits) and saves once its IR files are gone.

    HF_HUB_OFFLINE=1 PYTHONPATH=src .venv/bin/python benchmarks/explore/ov_lm_export_memory.py
"""

import gc
import os
import resource
import tempfile

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM


def rss_mb() -> float:
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def anonymous_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=8,
                         num_attention_heads=16, num_key_value_heads=4)
    model = LlamaForCausalLM(config).eval()
    print(f"params {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M; rss {rss_mb():.0f} MB, "
          f"anonymous {anonymous_mb():.0f} MB")
    import openvino as ov

    from accelkit.export.openvino_lm import export_stateful_lm

    graph = export_stateful_lm(model)
    gc.collect()
    print(f"after the export: rss {rss_mb():.0f} MB, anonymous {anonymous_mb():.0f} MB, "
          f"peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    request = ov.Core().compile_model(graph, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}).create_infer_request()
    ids = np.ones((1, 4), np.int64)
    got = request.infer({"input_ids": ids, "attention_mask": np.ones_like(ids), "position_ids": np.arange(4)[None],
                         "beam_idx": np.zeros(1, np.int32)})["logits"]
    with torch.no_grad():
        want = model(input_ids=torch.from_numpy(ids)).logits[:, -1].numpy()
    with tempfile.TemporaryDirectory() as tmp:
        ov.save_model(graph, os.path.join(tmp, "model.xml"), compress_to_fp16=False)
        saved = os.path.getsize(os.path.join(tmp, "model.bin")) / 2**20
    print(f"compiled and run: largest logit difference {float(np.abs(got - want).max()):.2g}; saved {saved:.0f} MB")


if __name__ == "__main__":
    main()
