"""Experiment (issue 15, not kept): does ONNX Runtime's offline transformer fusion (Attention,
SkipLayerNormalization, BiasGelu, EmbedLayerNormalization) speed minilm up over the graph ORT
already optimizes at load time? Times pre-tokenized held-out batches, 5 rounds, median, 2 threads.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/explore/ort_transformer_fusion.py eager   # Attention fused
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/explore/ort_transformer_fusion.py sdpa    # SDPA export: no Attention fusion
"""

import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import onnx  # noqa: E402
import onnxruntime.quantization as quant  # noqa: E402
import torch  # noqa: E402
from onnxruntime.transformers.optimizer import optimize_model  # noqa: E402
from transformers import AutoModel  # noqa: E402

from accelkit.export.onnx import (  # noqa: E402
    OnnxExportConfig,
    OrtConfig,
    OrtModule,
    _via_files,
    export_onnx,
    quantize_onnx_dynamic,
)
from accelkit.workloads import get_workload  # noqa: E402
from accelkit.workloads.minilm import minilm_path  # noqa: E402

torch.set_num_threads(2)
attn = sys.argv[1] if len(sys.argv) > 1 else "eager"
wl = get_workload("minilm")
model = wl.build_model()
s = wl.default_settings()
data = wl.eval_data()
example = wl.example_inputs(wl.calib_data(64), s)
plain = export_onnx(model, example)
to_fuse = model if attn == "sdpa" else AutoModel.from_pretrained(str(minilm_path()), local_files_only=True,
                                                                  attn_implementation="eager").eval()
with tempfile.TemporaryDirectory() as tmp:
    src, dst = os.path.join(tmp, "m.onnx"), os.path.join(tmp, "f.onnx")
    with open(src, "wb") as fh:
        # attention="model": the graph keeps to_fuse's own attention (export_onnx's default writes eager code)
        fh.write(export_onnx(to_fuse, example, OnnxExportConfig(attention="model")))
    opt = optimize_model(src, model_type="bert", num_heads=12, hidden_size=384, opt_level=0)
    print("fused:", {k: v for k, v in opt.get_fused_operator_statistics().items() if v})
    opt.save_model_to_file(dst)
    fused = open(dst, "rb").read()


def int8_fused(b: bytes) -> bytes:  # fused ops have no inferred types: tell the quantizer they are float
    return _via_files(b, lambda a, d: quant.quantize_dynamic(
        a, d, weight_type=quant.QuantType.QInt8, per_channel=True,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT}))


int8 = quantize_onnx_dynamic(plain, per_channel=True, op_types=["MatMul"])
variants = {
    "ort-fp32": OrtModule(plain, OrtConfig(intra_op_threads=2)),
    "ort-fused-fp32": OrtModule(fused, OrtConfig(intra_op_threads=2)),
    "ort-int8": OrtModule(int8, OrtConfig(intra_op_threads=2)),
    "ort-fused-int8": OrtModule(int8_fused(fused), OrtConfig(intra_op_threads=2)),
    "ort-int8-2streams": OrtModule(int8, OrtConfig(intra_op_threads=2, streams=2)),
    "ort-fused-int8-2streams": OrtModule(int8_fused(fused), OrtConfig(intra_op_threads=2, streams=2)),
}
ref = wl.predict(model, data, s)
for name, m in variants.items():
    print(name, {k: round(v, 4) for k, v in wl.quality(wl.predict(m, data, s), ref, data).items()})
batches = list(wl.batches(data, s))
times = {n: [] for n in variants}
for _ in range(5):
    for name, m in variants.items():
        start = time.perf_counter()
        for inputs, _idx in batches:
            m(**inputs)
        times[name].append(time.perf_counter() - start)
for name in variants:
    print(f"{name:24s} {len(data) / statistics.median(times[name]):7.0f} sentences/s (encoder only, pre-tokenized)")
