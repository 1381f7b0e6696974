"""Typed result records and their JSON schema ``accelkit.results/1``.

Schema (top level): ``schema``, ``machine`` (``accelkit env --json``), ``workload``,
``task``, ``baseline`` (a variant name), ``settings``, ``roofline``, ``created``,
``variants``: list of ``VariantResult`` dicts. See README "Results format".
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from accelkit._atomic import atomic_write_bytes
from accelkit.errors import OutputPathError, SchemaError
from accelkit.verdict import Verdict

__all__ = ["SCHEMA", "VariantResult", "Results", "save_results", "load_results", "check_writable", "describe_error"]

SCHEMA = "accelkit.results/1"


@dataclass
class VariantResult:
    """One measured variant. Times in ms, memory and size in MB, throughput in items/s."""

    name: str
    speedup: float | None = None  # median over interleaved pairs of baseline_time / variant_time
    throughput: float | None = None  # items (sentences, images, tokens) per second
    throughput_unit: str = "items/s"
    latency_ms: dict[str, float] | None = None  # {"p50", "p95"} of one batch (pass time / batches)
    pass_ms: dict[str, float] | None = None  # {"p50", "p95"} of one pass over the eval data
    peak_memory_mb: float | None = None
    size_mb: float | None = None
    params: int | None = None
    flops_per_item: float | None = None
    roofline_fraction: float | None = None  # achieved FLOP/s over this machine's peak for compute_dtype
    compute_dtype: str = "fp32"
    quality: dict[str, float] = field(default_factory=dict)
    quality_drop: float | None = None  # in the workload's primary metric; > 0 is worse
    meets_budget: bool | None = None
    build_s: float | None = None  # time to build the variant (quantize, compile, train), not in latency
    pair_ratios: list[float] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    # the steps as applied, with each technique's config: [{"technique": name, "config": {...}}]
    plan: list[dict[str, Any]] = field(default_factory=list)
    verdict: Verdict | None = None  # bench's judgement against the quality budget, made once

    def to_dict(self) -> dict:
        d = asdict(self)
        d["verdict"] = self.verdict.to_dict() if self.verdict is not None else None
        return d

    @property
    def within_budget(self) -> bool:
        """Ran and keeps the budget: bench's verdict; a record without one (a results file from an
        earlier accelkit, or built by hand) counts unless it failed or is marked over budget."""
        if self.verdict is not None:
            return self.verdict.within_budget
        return self.error is None and self.meets_budget is not False

    @classmethod
    def from_dict(cls, d: dict) -> VariantResult:
        if not isinstance(d, dict):
            raise SchemaError(f"results field 'variants' holds a {type(d).__name__} ({d!r:.40}); each variant "
                              "must be an object with a 'name'; regenerate the file")
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        where = f"variant {known.get('name')!r}" if isinstance(known.get("name"), str) else "a variant"
        _check_fields(known, _VARIANT_TYPES, where)
        if isinstance(known.get("verdict"), dict):
            known["verdict"] = Verdict.from_dict(known["verdict"])
        return cls(**known)


@dataclass
class Results:
    workload: str
    task: str
    baseline: str
    variants: list[VariantResult]
    machine: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    roofline: dict[str, Any] | None = None
    primary_metric: str = ""
    higher_is_better: bool = True
    max_quality_drop: float | None = None
    min_quality: dict[str, float] | None = None  # floors on quality metrics (accelkit.quality_floors)
    created: str = ""
    schema: str = SCHEMA
    # the peers measured beside (``accelkit bench --peers``: accelkit.peers.measure_peers's table)
    peers: dict[str, Any] | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["variants"] = [v.to_dict() for v in self.variants]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Results:
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            got = d.get("schema") if isinstance(d, dict) else type(d).__name__
            raise SchemaError(f"results schema is {got!r}, expected {SCHEMA!r}; write it with `accelkit bench --out`")
        fields = {k: v for k, v in d.items() if k in cls.__dataclass_fields__ and k != "variants"}
        _check_fields({**fields, "variants": d.get("variants")}, _RESULTS_TYPES, "results")
        try:
            return cls(variants=[VariantResult.from_dict(v) for v in d["variants"]], **fields)
        except (KeyError, TypeError) as exc:
            raise SchemaError(f"results file is missing or mistypes a field ({exc}); regenerate it") from exc

    def variant(self, name: str) -> VariantResult:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)


# What each field may hold when read back (None allowed where the dataclass allows it); a results
# file is user input, and a string where a number belongs would surface later as a traceback in
# the table or the report instead of one line here.
_NUM = (int, float)
_VARIANT_TYPES: dict[str, tuple[tuple[type, ...], bool]] = {
    "name": ((str,), False), "speedup": (_NUM, True), "throughput": (_NUM, True),
    "throughput_unit": ((str,), False), "latency_ms": ((dict,), True), "pass_ms": ((dict,), True),
    "peak_memory_mb": (_NUM, True), "size_mb": (_NUM, True), "params": ((int,), True),
    "flops_per_item": (_NUM, True), "roofline_fraction": (_NUM, True), "compute_dtype": ((str,), False),
    "quality": ((dict,), False), "quality_drop": (_NUM, True), "meets_budget": ((bool,), True),
    "build_s": (_NUM, True), "pair_ratios": ((list,), False), "details": ((dict,), False),
    "error": ((str,), True), "plan": ((list,), False), "verdict": ((dict,), True),
}
_RESULTS_TYPES: dict[str, tuple[tuple[type, ...], bool]] = {
    "workload": ((str,), False), "task": ((str,), False), "baseline": ((str,), False),
    "variants": ((list,), False), "machine": ((dict,), False), "settings": ((dict,), False),
    "roofline": ((dict,), True), "primary_metric": ((str,), False), "higher_is_better": ((bool,), False),
    "max_quality_drop": (_NUM, True), "min_quality": ((dict,), True), "created": ((str,), False), "schema": ((str,), False),
    "peers": ((dict,), True),
}
# dict fields whose values must be numbers: {p50, p95} times and quality metrics
_NUMERIC_DICTS = ("latency_ms", "pass_ms", "quality", "min_quality")


def _is(value: Any, kinds: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in kinds:  # True is an int to Python, not to a reader
        return False
    return isinstance(value, kinds)


def _check_fields(d: dict, types: dict[str, tuple[tuple[type, ...], bool]], where: str) -> None:
    for key, (kinds, nullable) in types.items():
        if key not in d or (d[key] is None and nullable):
            continue
        value = d[key]
        if not _is(value, kinds):
            expected = " or ".join("number" if k in _NUM else k.__name__ for k in dict.fromkeys(kinds))
            raise SchemaError(f"{where}: field {key!r} is {value!r:.60} ({type(value).__name__}), expected "
                              f"{expected}{' or null' if nullable else ''}; regenerate the results file")
        if key in _NUMERIC_DICTS:
            for sub, x in value.items():
                if not (_is(x, _NUM) or x is None):
                    raise SchemaError(f"{where}: field {key!r}[{sub!r}] is {x!r:.60}, expected a number; "
                                      "regenerate the results file")
        if key == "pair_ratios" and not all(_is(x, _NUM) for x in value):
            raise SchemaError(f"{where}: field 'pair_ratios' must hold numbers only; regenerate the results file")


def describe_error(exc: BaseException, limit: int = 300) -> str:
    """One line for a failed variant: exporters put whole graphs into their messages."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {first}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_writable(path: str | os.PathLike) -> Path:
    """Make sure ``path`` can be written (creating its folder); OutputPathError otherwise."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(f"cannot create folder {path.parent} ({exc.strerror}); choose a writable --out") from exc
    if path.is_dir():
        raise OutputPathError(f"{path} is a folder; give a file name, e.g. {path / 'results.json'}")
    # os.access says yes to root even on read-only mounts and /proc: create (and drop) a file there
    try:
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputPathError(f"{path.parent} is not writable ({exc.strerror}); choose another --out") from exc
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temp file and rename: never half-written."""
    return atomic_write_bytes(check_writable(path), text.encode("utf-8"))


def save_results(results: Results, path: str | os.PathLike) -> Path:
    return write_text_atomic(path, json.dumps(results.to_dict(), indent=2, default=str))


def load_results(path: str | os.PathLike) -> Results:
    path = Path(path)
    if not path.is_file():
        raise SchemaError(f"results file {path} does not exist; write one with `accelkit bench --out {path}`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SchemaError(f"{path} is not JSON ({exc}); give a results file written by accelkit") from exc
    return Results.from_dict(data)


# rows measured for reference only (accelkit.techniques.padding.REFERENCE_TECHNIQUES); a copy, so
# reading a results file needs no technique module
REFERENCE_ROWS = {"fixed-length": "reference: every batch padded to 128 tokens (at most the model's maximum) "
                                  "in data order, accelkit's earlier baseline; never a search candidate"}


def result_notes(res: Results) -> list[str]:
    """What a reader must know beside the numbers: what ``default`` is, the data measured and how
    much of it was truncated at the model's maximum length, and which rows are references."""
    notes = []
    settings = res.settings if isinstance(res.settings, dict) else {}
    if res.baseline == "default" and res.task == "infer":
        how = ("length-sorted batches padded to their longest item" if settings.get("sort_by_length")
               else "batches padded to their longest item, in data order" if settings.get("padding") == "dynamic"
               else "the workload's own batches")
        notes.append(f"default: how the model runs today — fp32, {how}")
    data = settings.get("data") if isinstance(settings.get("data"), dict) else {}
    if isinstance(data.get("truncated"), int):
        notes.append(f"{data.get('items', '?')} held-out items; {data['truncated']} longer than the model's "
                     f"maximum of {data.get('max_length', '?')} tokens, truncated there")
    split = data.get("split") if isinstance(data.get("split"), dict) else {}
    if split:
        notes.append(f"--data split: {split.get('n_calib', '?')} calibration, {split.get('n_heldout', '?')} "
                     f"held out, {split.get('n_unused', 0)} unused (seed {split.get('seed', 0)})")
    if res.task == "train":
        notes.extend(_train_notes(res, settings))
    for v in res.variants:
        if v.name in REFERENCE_ROWS:
            notes.append(f"{v.name}: {REFERENCE_ROWS[v.name]}")
    both = [str(v.name) for v in res.variants
            if isinstance(v.details, dict) and "quality_before_settling" in v.details]
    if both:
        notes.append(f"{', '.join(both)}: quality is the worse of the settled compiles and the one a "
                     "one-off call runs on (details.quality_settled, details.quality_before_settling)")
    return notes


def _train_notes(res: Results, settings: dict) -> list[str]:
    """The shape trained, the steps every variant took, and the GEMM peaks MFU is taken against."""
    notes = []
    shape = settings.get("model_config") if isinstance(settings.get("model_config"), dict) else {}
    flops = settings.get("flops_per_step")
    if shape and "n_embd" not in shape and shape.get("model_type"):  # a user's Hugging Face model (--model)
        notes.append(f"{shape['model_type']}: {shape.get('num_hidden_layers', '?')} layers, width "
                     f"{shape.get('hidden_size', '?')}, batch {settings.get('batch_size', '?')}"
                     + (f", {flops / 1e9:.1f} GFLOP a step (fwd+bwd)" if isinstance(flops, (int, float)) else ""))
    elif shape:
        notes.append(f"size {settings.get('size', '?')}: n_embd {shape.get('n_embd', '?')}, {shape.get('n_layer', '?')} "
                     f"layers, T {shape.get('block_size', '?')}, batch {settings.get('batch_size', '?')}"
                     + (f", {flops / 1e9:.1f} GFLOP a step (fwd+bwd)" if isinstance(flops, (int, float)) else ""))
    steps = sorted({v.details.get("steps_trained") for v in res.variants if isinstance(v.details, dict)} - {None})
    if len(steps) == 1:
        trainer = any(isinstance(v.details, dict) and "trainer_flags" in v.details for v in res.variants)
        notes.append(f"every variant trained {steps[0]} steps from the same init on the same batches"
                     + (" (the Trainer rows: the same data in the Trainer's own order)" if trainer else "")
                     + f"; {res.primary_metric} after them")
    roof = res.roofline if isinstance(res.roofline, dict) else {}
    peaks = [(d, roof.get(k)) for d, k in (("fp32", "fp32_gflops"), ("bf16", "bf16_gflops"))]
    peaks = [(d, x) for d, x in peaks if isinstance(x, (int, float)) and x]
    if peaks:
        notes.append("MFU: model FLOP/s over this machine's measured GEMM peak in the variant's dtype ("
                     + ", ".join(f"{d} {x:,.0f}" for d, x in peaks)
                     + f" GFLOP/s, {settings.get('threads', '?')} threads)")
    return notes
