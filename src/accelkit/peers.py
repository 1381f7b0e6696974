"""What a user could pick instead of accelkit, measured beside its plan in one process: the
sentence-transformers model's own ``encode`` in fp32 (the reference) and bf16, and its ONNX, ONNX
dynamic int8, OpenVINO and OpenVINO static int8 (NNCF) backends.

Every row encodes the same sentences in the same order, with the same batch size and thread
count (each row states both: ``threads``, ``batch_size``, ``batch_rule="parity"``), timed in
interleaved rounds; its ratio is the median of per-round ratios to the reference. For the
throughput objective, ``own_batch_sizes`` adds each row again at the batch size (of those) it runs
fastest at, labelled ``batch_rule="own best"``, with its ratio to the reference at the shared batch.
The peers come from the optional ``[peers]`` extra; one that is missing or fails to build is a
row that says why. ``accelkit bench --peers`` puts the table into the results and the report.

For a text-generation workload the peers are what a Hugging Face causal-LM user could pick:
``generate`` with ``cache_implementation="static"`` and ``torch.compile`` (fp32, and bf16 where
the machine has native bf16), and optimum-intel's ``OVModelForCausalLM`` (fp32 and int8 weights),
scored by tokens/s and greedy agreement with ``generate``'s own fp32 tokens.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from accelkit.hardware import package_version
from accelkit.signal_stack import keep_signal_stack

__all__ = ["PEERS", "Encode", "measure_peers"]

# sentences -> (n, dim) float32 embeddings; an encoder that also takes ``batch_size=`` can be timed
# at its own best batch size too
Encode = Callable[..., np.ndarray]
PARITY, OWN_BEST = "parity", "own best"
REFERENCE = "st-fp32"
# a peer counts as "keeping quality" at this mean cosine to the reference (issue 15's bar)
KEEPS_QUALITY = 0.99


@dataclass
class _Build:
    folder: Path
    threads: int
    batch_size: int
    calibration: list[str]
    work: Path
    built: dict[str, Any] = field(default_factory=dict)  # exports later builders start from
    notes: dict[str, str] = field(default_factory=dict)

    def encoder(self, model: Any, **kw: Any) -> Encode:
        def encode(s: list[str], batch_size: int | None = None) -> np.ndarray:
            return np.asarray(model.encode(list(s), batch_size=batch_size or self.batch_size, **kw), dtype=np.float32)

        return encode

    def ort_options(self) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = self.threads, 1
        return opts

    def ov_config(self) -> dict[str, str]:
        return {"INFERENCE_NUM_THREADS": str(self.threads), "PERFORMANCE_HINT": "LATENCY", "CACHE_DIR": ""}

    def ov_note(self, name: str, model: Any) -> None:
        """What OpenVINO compiled with: its default precision on a bf16-capable CPU is bf16."""
        self.encoder(model)(["warm"])  # compiles the request
        request = model.transformers_model.request
        hint, threads = (request.get_property(k) for k in ("INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS"))
        hint = hint.get_type_name() if hasattr(hint, "get_type_name") else hint
        self.notes[name] = f"OpenVINO runs in {hint} on {threads} threads"


def _st_fp32(b: _Build) -> Encode:
    from sentence_transformers import SentenceTransformer

    return b.encoder(SentenceTransformer(str(b.folder), device="cpu"))


def _st_bf16(b: _Build) -> Encode:
    import torch
    from sentence_transformers import SentenceTransformer

    return b.encoder(SentenceTransformer(str(b.folder), device="cpu", model_kwargs={"torch_dtype": torch.bfloat16}))


def _st_onnx(b: _Build) -> Encode:
    from sentence_transformers import SentenceTransformer

    folder = b.work / "st-onnx"  # exported from the local folder, saved with onnx/model.onnx
    SentenceTransformer(str(b.folder), device="cpu", backend="onnx", model_kwargs={"export": True}).save(str(folder))
    model = SentenceTransformer(str(folder), device="cpu", backend="onnx",
                                model_kwargs={"file_name": "onnx/model.onnx", "provider": "CPUExecutionProvider",
                                              "session_options": b.ort_options()})
    b.built["onnx"] = (folder, model)
    return b.encoder(model)


def _st_onnx_int8(b: _Build) -> Encode:
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    if "onnx" not in b.built:
        raise RuntimeError("needs the ONNX export, which failed (see the st-onnx row)")
    folder, onnx_model = b.built["onnx"]
    export_dynamic_quantized_onnx_model(onnx_model, "avx512_vnni", str(folder))
    model = SentenceTransformer(str(folder), device="cpu", backend="onnx",
                                model_kwargs={"file_name": "onnx/model_qint8_avx512_vnni.onnx",
                                              "provider": "CPUExecutionProvider", "session_options": b.ort_options()})
    return b.encoder(model)


def _st_openvino(b: _Build) -> Encode:
    from sentence_transformers import SentenceTransformer

    folder = b.work / "st-openvino"
    SentenceTransformer(str(b.folder), device="cpu", backend="openvino", model_kwargs={"export": True}).save(str(folder))
    model = SentenceTransformer(str(folder), device="cpu", backend="openvino",
                                model_kwargs={"file_name": "openvino/openvino_model.xml", "ov_config": b.ov_config()})
    b.built["openvino"] = (folder, model)
    b.ov_note("st-openvino", model)
    return b.encoder(model)


def _st_openvino_int8(b: _Build) -> Encode:
    from datasets import Dataset
    from optimum.intel import OVConfig, OVQuantizationConfig, OVQuantizer
    from sentence_transformers import SentenceTransformer

    if "openvino" not in b.built:
        raise RuntimeError("needs the OpenVINO export, which failed (see the st-openvino row)")
    if not b.calibration:
        raise RuntimeError("no calibration sentences to calibrate static int8 on")
    folder, ov_model = b.built["openvino"]
    # calibration: tokenized calibration sentences (one a sample), never the measured ones
    tokens = ov_model.tokenizer(b.calibration, truncation=True, max_length=ov_model.max_seq_length)
    # a copy of its own: the quantizer rewrites the graph it is given in place, and st-openvino's
    # model then ran int8 once something recompiled it (its own-batch row did, with int8's cosine)
    fresh = SentenceTransformer(str(folder), device="cpu", backend="openvino",
                                model_kwargs={"file_name": "openvino/openvino_model.xml"})
    quantizer = OVQuantizer.from_pretrained(fresh.transformers_model)
    raw = b.work / "ov-int8-raw"
    quantizer.quantize(calibration_dataset=Dataset.from_dict(dict(tokens)), save_directory=str(raw),
                       ov_config=OVConfig(quantization_config=OVQuantizationConfig(num_samples=len(b.calibration))))
    raw = raw / "openvino" if (raw / "openvino").is_dir() else raw  # optimum-intel nests it
    for suffix in (".xml", ".bin"):  # beside the fp32 one, named as sentence-transformers' own export names it
        shutil.copy(raw / f"openvino_model{suffix}", folder / "openvino" / f"openvino_model_qint8_quantized{suffix}")
    model = SentenceTransformer(str(folder), device="cpu", backend="openvino",
                                model_kwargs={"file_name": "openvino/openvino_model_qint8_quantized.xml",
                                              "ov_config": b.ov_config()})
    b.ov_note("st-openvino-int8", model)
    return b.encoder(model)


# name -> (what the row is, its builder); the order is the build order (later ones reuse exports)
PEERS: dict[str, tuple[str, Callable[[_Build], Encode]]] = {
    "st-fp32": ("sentence-transformers encode, fp32 (the reference)", _st_fp32),
    "st-bf16": ("sentence-transformers, weights in bf16", _st_bf16),
    "st-onnx": ('sentence-transformers backend="onnx"', _st_onnx),
    "st-onnx-int8": ("ONNX dynamic int8 (export_dynamic_quantized_onnx_model, avx512_vnni)", _st_onnx_int8),
    "st-openvino": ('sentence-transformers backend="openvino"', _st_openvino),
    "st-openvino-int8": ("OpenVINO static int8 (NNCF via optimum-intel's OVQuantizer, calibration split)",
                         _st_openvino_int8),
}
_DISTS = ("sentence-transformers", "transformers", "optimum", "optimum-onnx", "optimum-intel", "openvino", "nncf",
          "onnxruntime", "datasets", "torch")


class PeerSkipped(RuntimeError):
    """A peer that does not apply on this machine; its row shows the message alone."""


def _reason(exc: BaseException) -> str:
    line = next((s for s in str(exc).splitlines() if s.strip()), "")
    if isinstance(exc, PeerSkipped):
        return line[:240]
    # sentence-transformers raises a plain Exception ("... requires installing Optimum ...") for a missing backend
    if isinstance(exc, ImportError) or "requires installing" in line:
        return f"not installed ({line.split('. ')[0][:160]}); pip install -e '.[peers]'"
    return f"{type(exc).__name__}: {line[:240]}"


def measure_peers(
    folder: str | Path,
    sentences: Sequence[str],
    calibration: Sequence[str] = (),
    *,
    accelkit: dict[str, tuple[str, Encode]] | None = None,
    peers: Sequence[str] | None = None,
    threads: int | None = None,
    batch_size: int = 32,
    repeats: int = 5,
    own_batch_sizes: Sequence[int] = (),
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Build each peer of the sentence-transformers model in ``folder`` and time it beside ``accelkit``'s rows.

    ``accelkit`` maps a row name to (what it is, encode); the first of them is the reference when
    sentence-transformers itself is not installed (its ``default`` is the same fp32 computation).
    Returns a JSON-able table: ``rows`` (name, what, kind, sentences_per_s, ratio, cosine_mean,
    cosine_min, build_s, note or error), the ``reference``, the fastest peer that keeps mean cosine
    ≥ 0.99 (``best_peer``) and each accelkit row's ratio to it. Every row states its ``threads``,
    ``batch_size`` and ``batch_rule``: the parity rows all run at ``threads`` and ``batch_size``;
    with ``own_batch_sizes`` (the throughput objective), each row that takes ``batch_size=`` is
    timed again at the size of those it runs fastest at, as a row named "<name> @ own batch".
    """
    import torch

    from accelkit.workloads.minilm import embedding_quality

    say = progress or (lambda msg: None)
    sentences = list(sentences)
    if not sentences:
        from accelkit.errors import ConfigError

        raise ConfigError("measure_peers needs at least one sentence to encode")
    threads = threads or torch.get_num_threads()
    chosen = list(PEERS) if peers is None else list(peers)
    unknown = [p for p in chosen if p not in PEERS]
    if unknown:
        from accelkit.errors import UnknownVariantError

        raise UnknownVariantError(f"peers {unknown} are not known; choose from {list(PEERS)}")
    work = Path(tempfile.mkdtemp(prefix="accelkit-peers-"))  # every export and quantized copy; removed below
    build = _Build(Path(folder), threads, batch_size, list(calibration), work)
    entries: dict[str, dict[str, Any]] = {}
    encoders: dict[str, Encode] = {}
    outputs: dict[str, np.ndarray] = {}
    rows = [(n, "peer", *PEERS[n]) for n in chosen] + [(n, "accelkit", what, fn) for n, (what, fn) in
                                                      (accelkit or {}).items()]
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for name, kind, what, make in rows:
            say(f"peers: building {name}")
            entry = entries[name] = {"name": name, "kind": kind, "what": what, "threads": threads,
                                     "batch_size": batch_size, "batch_rule": PARITY}
            start = time.perf_counter()
            try:
                with keep_signal_stack():  # OpenVINO compiles here and swaps in a signal stack it later frees
                    fn = make(build) if kind == "peer" else make
                    outputs[name] = np.asarray(fn(sentences), dtype=np.float32)  # the warm-up; its output is scored
                encoders[name] = fn
                entry["build_s"] = round(time.perf_counter() - start, 2)
            except Exception as exc:  # a peer failing to build is a row, never a crash
                from accelkit.quiet import log_exception

                log_exception(exc, f"peer {name}")
                entry["error"] = _reason(exc)
        reference = REFERENCE if REFERENCE in encoders else next((n for n, k, *_ in rows if k == "accelkit"
                                                                  and n in encoders), None)
        if reference is None:
            return _table(entries, None, sentences, threads, batch_size, repeats)
        times: dict[str, list[float]] = {n: [] for n in encoders}
        names = list(encoders)
        for r in range(repeats):
            # the order rotates each round: no row always runs after the same neighbour (whose
            # runtime's threads may still be spinning down)
            for name in names[r % len(names):] + names[: r % len(names)]:
                fn = encoders[name]
                if "error" in entries[name]:
                    continue
                say(f"peers: round {r + 1}/{repeats}: {name}")
                start = time.perf_counter()
                try:
                    fn(sentences)
                except Exception as exc:
                    entries[name]["error"] = f"failed while timed: {_reason(exc)}"
                    continue
                times[name].append(time.perf_counter() - start)
        if own_batch_sizes:
            _own_best_rows(entries, encoders, outputs, times, reference, sentences, sorted(set(own_batch_sizes)),
                           threads, repeats, say)
    finally:
        torch.set_num_threads(saved_threads)
        shutil.rmtree(work, ignore_errors=True)
    ref = torch.from_numpy(outputs[reference])
    for name, entry in entries.items():
        if "error" in entry or name not in outputs or outputs[name].shape != outputs[reference].shape:
            if "error" not in entry:
                entry["error"] = f"embeddings of shape {outputs[name].shape}, the reference's are {tuple(ref.shape)}"
            continue
        quality = embedding_quality(torch.from_numpy(outputs[name]), ref)
        ref_times = times[reference] if entry["batch_rule"] == PARITY else times[f"{reference}{_AGAIN}"]
        ratios = [a / b for a, b in zip(ref_times, times[name], strict=False) if b > 0]
        entry.update(sentences_per_s=round(len(sentences) / statistics.median(times[name]), 1),
                     ratio=round(statistics.median(ratios), 4), cosine_mean=round(quality["cosine_mean"], 6),
                     cosine_min=round(quality["cosine_min"], 6))
        if name in build.notes:
            entry["note"] = build.notes[name]
    return _table(entries, reference, sentences, threads, batch_size, repeats)


def _own_best_rows(entries: dict[str, dict], encoders: dict[str, Encode], outputs: dict[str, np.ndarray],
                   times: dict[str, list[float]], reference: str, sentences: list[str], sizes: list[int],
                   threads: int, repeats: int, say: Callable[[str], None]) -> None:
    """Each row again at the batch size of ``sizes`` it encodes fastest at (a short probe on the
    first sentences, then interleaved rounds with the reference at the shared batch size)."""
    import inspect

    probe = sentences[: max(4 * max(sizes), 64)]
    own: dict[str, tuple[Encode, int]] = {}
    for name in [n for n in encoders if "error" not in entries[n]]:
        fn = encoders[name]
        row = f"{name} @ own batch"
        base = {k: entries[name][k] for k in ("kind", "what")}
        if "batch_size" not in inspect.signature(fn).parameters:
            entries[row] = {"name": row, **base, "threads": threads, "batch_size": None, "batch_rule": OWN_BEST,
                            "error": "runs at one fixed batch size: no own-best row"}
            continue
        say(f"peers: batch sizes {sizes} for {name}")
        best = {size: _pass_seconds(fn, probe, size) for size in sizes}
        size = min(best, key=best.__getitem__)
        entries[row] = {"name": row, **base, "threads": threads, "batch_size": size, "batch_rule": OWN_BEST,
                        "probe_s": {str(k): round(v, 4) for k, v in best.items()}}
        own[row] = (fn, size)
    calls = {name: partial(fn, sentences, batch_size=size) for name, (fn, size) in own.items()}
    first = _rounds_beside_reference(calls, partial(encoders[reference], sentences), f"{reference}{_AGAIN}", times,
                                     repeats)
    outputs.update({name: np.asarray(out, dtype=np.float32) for name, out in first.items()})


# the reference's times in the rounds of the rows at their own best batch size: their baseline
_AGAIN = " @ parity again"


def _pass_seconds(fn: Callable[..., Any], data: list[str], size: int) -> float:
    """Seconds of a pass of ``fn`` over ``data`` at ``size`` a call, after an untimed one (a new
    shape may compile or allocate)."""
    fn(data, batch_size=size)
    start = time.perf_counter()
    fn(data, batch_size=size)
    return time.perf_counter() - start


def _rounds_beside_reference(calls: dict[str, Callable[[], Any]], reference: Callable[[], Any], again: str,
                             times: dict[str, list[float]], repeats: int,
                             say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``repeats`` interleaved rounds of ``calls`` (the order rotating each round), each round
    ending with ``reference`` (timed under ``again``); times go into ``times``, and each call's
    first output is returned."""
    first: dict[str, Any] = {}
    times[again] = []
    names = list(calls)
    for r in range(repeats):
        for name in names[r % max(1, len(names)):] + names[: r % max(1, len(names))]:
            if say is not None:
                say(f"peers: round {r + 1}/{repeats}: {name}")
            start = time.perf_counter()
            out = calls[name]()
            times.setdefault(name, []).append(time.perf_counter() - start)
            first.setdefault(name, out)
        start = time.perf_counter()
        reference()  # the reference at the shared batch size, in the same round
        times[again].append(time.perf_counter() - start)
    return first


def _fastest_peer(entries: dict[str, dict], rule: str, metric: str, floor: float) -> dict | None:
    """The peer row under ``rule`` (parity or own best) with the highest ratio among those whose
    ``metric`` is at least ``floor``; None when none is."""
    ok = [e for e in entries.values() if e["kind"] == "peer" and "ratio" in e and e["batch_rule"] == rule
          and e[metric] >= floor]
    return max(ok, key=lambda e: e["ratio"], default=None)


def _table(entries: dict[str, dict], reference: str | None, sentences: list[str], threads: int, batch_size: int,
           repeats: int) -> dict[str, Any]:
    best, best_own = (_fastest_peer(entries, rule, "cosine_mean", KEEPS_QUALITY) for rule in (PARITY, OWN_BEST))
    for e in entries.values():
        judge_by = best if e["batch_rule"] == PARITY else best_own
        if judge_by is not None and e["kind"] == "accelkit" and "ratio" in e:
            e["vs_best_peer"] = round(e["ratio"] / judge_by["ratio"], 4)
    return {"reference": reference, "best_peer": best["name"] if best else None,
            "best_peer_own_batch": best_own["name"] if best_own else None, "keeps_quality": KEEPS_QUALITY,
            "sentences": len(sentences), "threads": threads, "batch_size": batch_size, "repeats": repeats,
            "versions": {d: package_version(d) for d in _DISTS}, "rows": list(entries.values())}


def check_peer_workload(workload: Any) -> Path:
    """The sentence-transformers folder peers are built from; ConfigError when the workload has none."""
    from accelkit.errors import ConfigError

    folder = getattr(workload, "sentence_folder", lambda: None)()
    if folder is None:
        raise ConfigError(f"--peers compares sentence-transformers backends, and {workload.name!r} is not a "
                          "sentence-transformers model; use -w minilm or --model <a sentence-transformers folder>")
    return Path(folder)


def _keeps(v: Any, budget: float, results: Any) -> bool:
    """Within ``budget``: bench's verdict when bench judged that budget, else the same judge on
    the peers' default budget (a bench without one)."""
    from accelkit.verdict import judge

    if results.max_quality_drop == budget and v.verdict is not None:
        return v.verdict.within_budget
    return judge(quality=v.quality, quality_drop=v.quality_drop, error=v.error, max_quality_drop=budget,
                 min_quality=results.min_quality).within_budget


def peers_beside_bench(workload: Any, results: Any, *, max_quality_drop: float | None = None, repeats: int = 5,
                       limit: int | None = None, calib: int = 300, own_batch_sizes: Sequence[int] = (),
                       progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The peer table for a finished ``bench(..., keep_built=True)`` of a sentence-embedding workload.

    accelkit's rows: its ``default`` run and the fastest measured variant within ``max_quality_drop``
    (0.01 of the primary metric when None) and bench's ``min_quality`` floors, each encoding from raw sentences as the peers do
    (tokenization included).
    """
    folder = check_peer_workload(workload)
    budget = 0.01 if max_quality_drop is None else max_quality_drop
    from accelkit.techniques.registry import BASELINE

    base = workload.default_settings(results.settings.get("batch_size"))
    model = workload.build_model()

    def encoder(m: Any, settings: Any) -> Encode:
        def encode(s: list[str], batch_size: int | None = None) -> np.ndarray:
            at = settings if batch_size is None else settings.with_(batch_size=batch_size)
            return workload.predict(m, list(s), at).float().cpu().numpy()

        return encode

    rows: dict[str, tuple[str, Encode]] = {"accelkit-default": (f"accelkit {BASELINE} (how the model runs today)",
                                                                encoder(model, base))}
    within = [v for v in results.variants if v.name != BASELINE and v.speedup and v.name in results.built
              and _keeps(v, budget, results)]
    if within:
        best = max(within, key=lambda v: v.speedup)
        built = results.built[best.name]
        rows[f"accelkit {best.name}"] = (f"accelkit's fastest variant within a {budget:g} drop",
                                         encoder(built.model, built.settings))
    table = measure_peers(folder, workload.eval_data(limit), workload.calib_data(calib), accelkit=rows,
                          batch_size=base.batch_size, repeats=repeats, own_batch_sizes=own_batch_sizes,
                          progress=progress)
    table["text"] = f"{workload.name} held-out evaluation sentences"
    return table


# --- text generation: what a user of a Hugging Face causal LM could pick instead of accelkit ---------------

GEN_REFERENCE = "hf-generate"
# a generation peer counts as "keeping quality" at this greedy agreement with the fp32 tokens (issue 24's bar)
GEN_KEEPS_QUALITY = 0.98
GEN_COLUMNS = [["tokens_per_s", "tokens/s"], ["ratio", "vs ref"], ["greedy_agreement", "agreement"],
               ["first_divergence", "1st diff"]]


class _GenerateWith:
    """A causal LM whose ``generate`` always gets ``options`` (a peer's own settings, as its user passes them)."""

    def __init__(self, model: Any, **options: Any) -> None:
        self.model, self.options = model, options

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        return self.model.generate(*args, **{**kwargs, **self.options})


@dataclass
class _GenBuild:
    workload: Any
    settings: Any
    notes: dict[str, str] = field(default_factory=dict)

    def runner(self, model: Any) -> Callable[..., Any]:
        """prompts (, batch_size=None: the shared one) → new token ids."""
        def run(prompts: list[str], batch_size: int | None = None) -> Any:
            settings = self.settings if batch_size is None else self.settings.with_(batch_size=batch_size)
            return self.workload.predict(model, list(prompts), settings)
        return run

    def folder(self) -> Path:
        folder = self.workload.model_folder()
        if folder is None:
            raise RuntimeError("needs the model's Hugging Face folder (--model PATH); a module function has none")
        return Path(folder)


def _hf_generate(b: _GenBuild) -> Callable:
    return b.runner(b.workload.build_model())


def _native_bf16_missing() -> str | None:
    import torch

    from accelkit.hardware import cpu_flags

    if torch.cuda.is_available() or {"AVX512_BF16", "AMX_BF16"} & set(cpu_flags()):
        return None
    return ("skipped: this CPU has no native bf16 (AVX512_BF16 or AMX); bf16 matmuls would be emulated, "
            "slower than fp32")


def _hf_static_compile(b: _GenBuild, dtype: str = "fp32") -> Callable:
    """HF's recipe for fast decoding: ``cache_implementation="static"`` and ``torch.compile`` of
    ``model.forward`` (generate's own auto-compile is for GPUs only)."""
    import torch

    model = b.workload.build_model()
    if dtype == "bf16":
        why = _native_bf16_missing()
        if why:
            raise PeerSkipped(why)
        model = model.to(torch.bfloat16)
    model.forward = torch.compile(model.forward)
    return b.runner(_GenerateWith(model, cache_implementation="static"))


def _hf_static_compile_bf16(b: _GenBuild) -> Callable:
    return _hf_static_compile(b, "bf16")


def _hf_prompt_lookup(b: _GenBuild) -> Callable:
    """transformers' own prompt-lookup decoding (``prompt_lookup_num_tokens``; 10 as its docs show),
    greedy output unchanged; assisted generation runs one sequence at a time."""
    if b.settings.batch_size != 1:
        raise PeerSkipped("skipped: transformers' prompt lookup (assisted generation) runs batch 1 only")
    return b.runner(_GenerateWith(b.workload.build_model(), prompt_lookup_num_tokens=10))


def _ov_causal_lm(b: _GenBuild, int8: bool = False, f32: bool = False) -> Callable:
    from optimum.intel import OVModelForCausalLM

    kw: dict[str, Any] = {"load_in_8bit": True} if int8 else {"load_in_8bit": False}
    if f32:  # OpenVINO computes in bf16 by default on CPUs with native bf16, which changes greedy tokens
        kw["ov_config"] = {"INFERENCE_PRECISION_HINT": "f32"}
    model = OVModelForCausalLM.from_pretrained(str(b.folder()), export=True, compile=True, **kw)
    return b.runner(model)


def _ov_causal_lm_f32(b: _GenBuild) -> Callable:
    return _ov_causal_lm(b, f32=True)


def _ov_causal_lm_int8(b: _GenBuild) -> Callable:
    return _ov_causal_lm(b, int8=True)


GENERATION_PEERS: dict[str, tuple[str, Callable[[_GenBuild], Callable]]] = {
    "hf-generate": ("transformers generate, fp32, dynamic cache (the reference)", _hf_generate),
    "hf-static-compile": ('generate with cache_implementation="static", model.forward torch.compile\'d',
                          _hf_static_compile),
    "hf-static-compile-bf16": ("the same with the weights in bf16", _hf_static_compile_bf16),
    "hf-prompt-lookup": ("generate with prompt_lookup_num_tokens=10 (drafts copied from the prompt; batch 1)",
                         _hf_prompt_lookup),
    "ov-causal-lm": ("optimum-intel OVModelForCausalLM, fp32 weights, OpenVINO's default precision (bf16 "
                     "compute where the CPU has it)", _ov_causal_lm),
    "ov-causal-lm-f32": ("the same, computing in fp32 (INFERENCE_PRECISION_HINT f32)", _ov_causal_lm_f32),
    "ov-causal-lm-int8": ("optimum-intel OVModelForCausalLM, int8 weights (NNCF)", _ov_causal_lm_int8),
}


def measure_generation_peers(
    workload: Any,
    settings: Any,
    prompts: Sequence[str],
    *,
    accelkit: dict[str, tuple] | None = None,
    peers: Sequence[str] | None = None,
    repeats: int = 3,
    own_batch_sizes: Sequence[int] = (),
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Build each generation peer of ``workload``'s causal LM and time it beside ``accelkit``'s rows
    (name → (what, prompts → new token ids) or (what, fn, batch size)), every row writing the same
    prompts in interleaved rounds, the peers in the same batches (``settings``). An accelkit row
    whose plan chose its own batch size is labelled ``batch_rule="own best"``; with
    ``own_batch_sizes``, each peer is also timed at the size of those it writes fastest at, as
    "<name> @ own batch", so such a row is judged against peers at their own best. Returns a
    JSON-able table like ``measure_peers``'s, with tokens/s and greedy agreement with the
    reference's tokens in place of sentences/s and cosine."""
    import torch

    from accelkit.errors import ConfigError, UnknownVariantError

    say = progress or (lambda msg: None)
    prompts = list(prompts)
    if not prompts:
        raise ConfigError("measure_generation_peers needs at least one prompt")
    chosen = list(GENERATION_PEERS) if peers is None else list(peers)
    unknown = [p for p in chosen if p not in GENERATION_PEERS]
    if unknown:
        raise UnknownVariantError(f"peers {unknown} are not known; choose from {list(GENERATION_PEERS)}")
    build = _GenBuild(workload, settings)
    rows = [(n, "peer", *GENERATION_PEERS[n], settings.batch_size) for n in chosen] + [
        (n, "accelkit", row[0], row[1], row[2] if len(row) > 2 else settings.batch_size)
        for n, row in (accelkit or {}).items()]
    entries: dict[str, dict[str, Any]] = {}
    runners: dict[str, Callable] = {}
    outputs: dict[str, Any] = {}
    for name, kind, what, make, batch in rows:
        say(f"peers: building {name}")
        entry = entries[name] = {"name": name, "kind": kind, "what": what, "batch_size": batch,
                                 "batch_rule": PARITY if batch == settings.batch_size else OWN_BEST}
        start = time.perf_counter()
        try:
            with keep_signal_stack():
                fn = make(build) if kind == "peer" else make
                outputs[name] = fn(prompts)  # the warm-up (compiles); its tokens are scored
            runners[name] = fn
            entry["build_s"] = round(time.perf_counter() - start, 2)
        except Exception as exc:  # a peer failing to build is a row, never a crash
            from accelkit.quiet import log_exception

            log_exception(exc, f"peer {name}")
            entry["error"] = _reason(exc)
    reference = GEN_REFERENCE if GEN_REFERENCE in runners else next(
        (n for n, k, *_ in rows if k == "accelkit" and n in runners), None)
    n_tokens = len(prompts) * getattr(workload, "max_new_tokens", 1)
    extra = {"columns": GEN_COLUMNS, "quality_metric": "greedy_agreement", "max_new_tokens":
             getattr(workload, "max_new_tokens", None)}
    if reference is None:
        return {**_gen_table(entries, None, len(prompts), settings, repeats), **extra}
    times: dict[str, list[float]] = {n: [] for n in runners}
    names = list(runners)
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            if "error" in entries[name]:
                continue
            say(f"peers: round {r + 1}/{repeats}: {name}")
            start = time.perf_counter()
            try:
                runners[name](prompts)
            except Exception as exc:
                entries[name]["error"] = f"failed while timed: {_reason(exc)}"
                continue
            times[name].append(time.perf_counter() - start)
    if own_batch_sizes:
        _own_best_generation(entries, runners, outputs, times, reference, prompts, sorted(set(own_batch_sizes)),
                             repeats, say)
    ref = outputs[reference]
    for name, entry in entries.items():
        if "error" in entry:
            continue
        out = outputs[name]
        if not isinstance(out, torch.Tensor) or out.shape != ref.shape:
            entry["error"] = f"tokens of shape {tuple(getattr(out, 'shape', ()))}, the reference's are {tuple(ref.shape)}"
            continue
        quality = workload.quality(out, ref, None)
        ref_times = times[f"{reference}{_AGAIN}"] if name.endswith(" @ own batch") else times[reference]
        ratios = [a / b for a, b in zip(ref_times, times[name], strict=False) if b > 0]
        entry.update(tokens_per_s=round(n_tokens / statistics.median(times[name]), 1),
                     ratio=round(statistics.median(ratios), 4),
                     greedy_agreement=round(quality["greedy_agreement"], 4),
                     first_divergence=round(quality["first_divergence"], 2))
        if name in build.notes:
            entry["note"] = build.notes[name]
    return {**_gen_table(entries, reference, len(prompts), settings, repeats, times), **extra}


_OWN_ROUNDS = " (own-batch rounds)"


def _own_best_generation(entries: dict[str, dict], runners: dict[str, Callable], outputs: dict[str, Any],
                         times: dict[str, list[float]], reference: str, prompts: list[str], sizes: list[int],
                         repeats: int, say: Callable[[str], None]) -> None:
    """Each peer again at the batch size of ``sizes`` it writes fastest at (one untimed and one
    timed pass over the prompts a size), then interleaved rounds with the reference at the shared
    batch size, whose times are the own-best rows' baseline, and with accelkit's rows that run at
    their own plan's batch size, so those are compared with the peers pair by pair."""
    own: dict[str, tuple[Callable, int]] = {}
    for name in [n for n in runners if entries[n]["kind"] == "peer" and "error" not in entries[n]]:
        fn, row = runners[name], f"{name} @ own batch"
        base = {k: entries[name][k] for k in ("kind", "what")}
        say(f"peers: batch sizes {sizes} for {name}")
        spent: dict[int, float] = {}
        for size in sizes:
            try:
                spent[size] = _pass_seconds(fn, prompts, size)
            except Exception as exc:  # a size a peer cannot run (batch 1 only) is left out
                from accelkit.quiet import log_exception

                log_exception(exc, f"peer {name} at batch {size}")
        if not spent:
            entries[row] = {"name": row, **base, "batch_size": None, "batch_rule": OWN_BEST,
                            "error": f"ran at none of the batch sizes {sizes}"}
            continue
        size = min(spent, key=spent.__getitem__)
        entries[row] = {"name": row, **base, "batch_size": size, "batch_rule": OWN_BEST,
                        "probe_s": {str(k): round(v, 4) for k, v in spent.items()}}
        own[row] = (fn, size)
    calls = {name: partial(fn, prompts, batch_size=size) for name, (fn, size) in own.items()}
    for name in [n for n in runners if entries[n]["kind"] == "accelkit" and entries[n]["batch_rule"] == OWN_BEST
                 and "error" not in entries[n]]:
        calls[f"{name}{_OWN_ROUNDS}"] = partial(runners[name], prompts)  # its plan's own batch size, as first timed
    first = _rounds_beside_reference(calls, partial(runners[reference], prompts), f"{reference}{_AGAIN}", times,
                                     repeats, say)
    outputs.update({name: first[name] for name in own})  # accelkit's rows keep the outputs they were scored on


def _gen_table(entries: dict[str, dict], reference: str | None, n_prompts: int, settings: Any,
               repeats: int, times: dict[str, list[float]] | None = None) -> dict[str, Any]:
    import torch

    best, best_own = (_fastest_peer(entries, rule, "greedy_agreement", GEN_KEEPS_QUALITY)
                      for rule in (PARITY, OWN_BEST))
    for e in entries.values():
        if e["kind"] != "accelkit" or "ratio" not in e:
            continue
        # a row at its plan's own batch size is judged against the peers at their own best
        judge_by = best if e["batch_rule"] == PARITY else (best_own or best)
        paired = (times or {}).get(f"{e['name']}{_OWN_ROUNDS}")
        if judge_by is best_own and best_own is not None and paired:
            # timed in the same rounds as the peers at their own best: pair by pair, not through
            # two reference ratios from rounds minutes apart
            e["vs_best_peer"] = round(statistics.median(p / a for p, a in zip(times[best_own["name"]], paired,
                                                                              strict=False) if a > 0), 4)
        elif judge_by is not None:
            e["vs_best_peer"] = round(e["ratio"] / judge_by["ratio"], 4)
            if e["batch_rule"] == OWN_BEST and best_own is None:
                e["vs_best_peer_note"] = "against the peers at the shared batch size: none ran at its own best"
    return {"reference": reference, "best_peer": best["name"] if best else None,
            "best_peer_own_batch": best_own["name"] if best_own else None, "keeps_quality": GEN_KEEPS_QUALITY,
            "prompts": n_prompts, "threads": torch.get_num_threads(), "batch_size": settings.batch_size,
            "repeats": repeats, "versions": {d: package_version(d) for d in _DISTS}, "rows": list(entries.values())}


def generation_peers_beside_bench(workload: Any, results: Any, *, max_quality_drop: float | None = None,
                                  repeats: int = 3, limit: int | None = None, peers: Sequence[str] | None = None,
                                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The peer table for a finished ``bench(..., keep_built=True)`` of a text-generation workload:
    accelkit's ``default`` and its fastest variant within ``max_quality_drop`` of greedy agreement
    (0.02 when None), beside the generation peers (``peers``; None: all), on the held-out prompts."""
    from accelkit.techniques.registry import BASELINE

    budget = 0.02 if max_quality_drop is None else max_quality_drop
    base = workload.default_settings(results.settings.get("batch_size"))
    model = workload.build_model()

    def runner(m: Any, settings: Any) -> Callable:
        return lambda prompts: workload.predict(m, list(prompts), settings)

    rows: dict[str, tuple] = {"accelkit-default": (f"accelkit {BASELINE} (how the model runs today)",
                                                   runner(model, base))}
    within = [v for v in results.variants if v.name != BASELINE and v.speedup and v.name in results.built
              and _keeps(v, budget, results)]
    own_sizes: list[int] = []
    prompts = workload.eval_data(limit)
    if within:
        best = max(within, key=lambda v: v.speedup)
        built = results.built[best.name]
        rows[f"accelkit {best.name}"] = (f"accelkit's fastest variant within a {budget:g} agreement drop",
                                         runner(built.model, built.settings), built.settings.batch_size)
        if built.settings.batch_size > base.batch_size:
            # its plan chose a larger batch (prompt batching): the peers get theirs too, over the
            # sizes prompt batching tries, so the comparison is each at its own best
            own_sizes = own_batch_candidates(base.batch_size, max(64, built.settings.batch_size), len(prompts))
    table = measure_generation_peers(workload, base, prompts, accelkit=rows, repeats=repeats,
                                     peers=peers, own_batch_sizes=own_sizes, progress=progress)
    table["text"] = f"{workload.name} held-out prompts"
    return table


def own_batch_candidates(start: int, largest: int, items: int) -> list[int]:
    """``start`` doubled while it stays within ``largest`` and the ``items`` there are to batch."""
    sizes = [start]
    while sizes[-1] * 2 <= min(largest, items):
        sizes.append(sizes[-1] * 2)
    return sizes


def peers_for(workload: Any) -> str:
    """Which peer family ``bench --peers`` compares ``workload`` against: "generation" for a model
    that generates, "sentence-embedding" otherwise (ConfigError when it is neither)."""
    if "generate" in workload.offers():
        return "generation"
    check_peer_workload(workload)
    return "sentence-embedding"
