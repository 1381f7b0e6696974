"""Experiment (issue 27): minilm's ONNX graph with each layer's query, key and value projections
fused into one MatMul (weights concatenated, one Split after), both NNCF int8 on the same 256
calibration sentences and served by the runtime as ``openvino-int8+static-shapes`` serves them
(bf16 float parts, two streams, one compile per batch shape), on the 512 held-out pydoc sentences at
batch 32, bucketed padding, 2 threads. Inference only; interleaved rounds; cosine of mean-pooled,
normalised embeddings against the fp32 PyTorch model (mean / worst sentence).

    HF_HUB_OFFLINE=1 ACCELKIT_THREADS=2 .venv/bin/python benchmarks/explore/minilm_fused_qkv.py [--rounds 9]
"""

import argparse
import collections
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402

from accelkit.export.onnx import export_onnx, named_numpy_inputs  # noqa: E402
from accelkit.runtimes.openvino import OpenVinoConfig, OpenVinoModule  # noqa: E402
from accelkit.tasks.pooling import mean_pool  # noqa: E402
from accelkit.techniques.openvino_runtime import quantize_onnx_nncf  # noqa: E402
from accelkit.workloads import get_workload  # noqa: E402


def fuse_shared_input_matmuls(onnx_bytes: bytes) -> tuple[bytes, int]:
    """Each set of 2+ weight MatMuls (each followed by a bias Add) reading the same tensor becomes
    one MatMul and Add over the concatenated weights and a Split: the same arithmetic, one GEMM."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(onnx_bytes)
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consumers = collections.defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    groups = collections.defaultdict(list)
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in inits or len(inits[node.input[1]].dims) != 2:
            continue
        after = consumers[node.output[0]]
        if len(after) != 1 or after[0].op_type != "Add":
            continue
        add = after[0]
        bias = [i for i in add.input if i in inits]
        if len(bias) != 1:
            continue
        groups[node.input[0]].append((node, add, bias[0]))
    fused = 0
    for source, members in groups.items():
        if len(members) < 2:
            continue
        weights = [numpy_helper.to_array(inits[m.input[1]]) for m, _, _ in members]
        biases = [numpy_helper.to_array(inits[b]) for _, _, b in members]
        tag = f"fused_{fused}"
        graph.initializer.extend([numpy_helper.from_array(np.concatenate(weights, axis=1), f"{tag}.weight"),
                                  numpy_helper.from_array(np.concatenate(biases), f"{tag}.bias"),
                                  numpy_helper.from_array(np.array([w.shape[1] for w in weights], np.int64),
                                                          f"{tag}.split")])
        first = list(graph.node).index(members[0][0])
        new = [helper.make_node("MatMul", [source, f"{tag}.weight"], [f"{tag}/mm"], name=f"/{tag}/MatMul"),
               helper.make_node("Add", [f"{tag}/mm", f"{tag}.bias"], [f"{tag}/add"], name=f"/{tag}/Add"),
               helper.make_node("Split", [f"{tag}/add", f"{tag}.split"], [a.output[0] for _, a, _ in members],
                                axis=-1, name=f"/{tag}/Split")]
        for m, a, _ in members:
            graph.node.remove(m)
            graph.node.remove(a)
        for offset, node in enumerate(new):
            graph.node.insert(first + offset, node)
        fused += 1
    onnx.checker.check_model(model)
    return model.SerializeToString(), fused


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(2)
    wl = get_workload("minilm")
    settings = wl.default_settings(32).with_(padding="bucketed", sort_by_length=True)
    model = wl.build_model()
    data = wl.eval_data()
    graph = export_onnx(model, wl.example_inputs(data, settings))
    fused_graph, n = fuse_shared_input_matmuls(graph)
    print(f"fused {n} sets of MatMuls sharing an input")
    samples = [named_numpy_inputs(inputs) for inputs, _ in wl.batches(wl.calib_data(256), settings.with_(batch_size=1))]
    config = OpenVinoConfig(precision="bf16", streams=2, static_shapes=40)
    modules = {name: OpenVinoModule(quantize_onnx_nncf(g, samples), config)
               for name, g in (("separate", graph), ("fused", fused_graph))}
    batches = [inputs for inputs, _ in wl.batches(data, settings)]
    with torch.no_grad():
        ref = torch.cat([mean_pool(model(**b)[0].float(), b["attention_mask"]) for b in batches])
    ref = torch.nn.functional.normalize(ref, dim=-1)
    for name, module in modules.items():
        emb = torch.cat([mean_pool(module.run(**b).float(), b["attention_mask"]) for b in batches])
        cos = (torch.nn.functional.normalize(emb, dim=-1) * ref).sum(-1)
        print(f"{name}: cosine to fp32 {cos.mean():.4f} / {cos.min():.4f}")
    times: dict[str, list[float]] = {k: [] for k in modules}
    for _ in range(args.rounds):
        for name, module in modules.items():
            start = time.perf_counter()
            for b in batches:
                module.run(**b)
            times[name].append(time.perf_counter() - start)
    pairs = [a / b for a, b in zip(times["separate"], times["fused"], strict=True)]
    for name, t in times.items():
        print(f"{name:>9}: {statistics.median(t) * 1e3:.1f} ms a pass")
    print(f"fused against separate: {statistics.median(pairs):.3f}x (pairs {min(pairs):.2f}-{max(pairs):.2f})")


if __name__ == "__main__":
    main()
