"""What this machine can do, and which acceleration path to take on it.

``probe()`` reads CUDA/MPS capabilities, the CPU's ISA flags and library versions;
``recommend()`` turns those facts into the precision, quantization backend,
DataLoader workers and thread count the other modules default to.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from functools import lru_cache

import torch

__all__ = ["cpu_flags", "probe", "recommend"]

# /proc/cpuinfo flag → the name we report.
_ISA_FLAGS = {
    "avx2": "AVX2",
    "fma": "FMA",
    "avx512f": "AVX512F",
    "avx512bw": "AVX512BW",
    "avx512_bf16": "AVX512_BF16",
    "avx512_vnni": "AVX512_VNNI",
    "avx512_fp16": "AVX512_FP16",
    "avx_vnni": "AVX_VNNI",
    "amx_tile": "AMX_TILE",
    "amx_bf16": "AMX_BF16",
    "amx_int8": "AMX_INT8",
}


def package_version(dist: str) -> str | None:
    """The installed version of distribution ``dist``, or None when it is not installed."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model, frozenset(flags)


def cpu_flags() -> list[str]:
    """The ISA extensions relevant to acceleration that this CPU reports."""
    _, flags = _cpuinfo()
    found = [name for flag, name in _ISA_FLAGS.items() if flag in flags]
    if torch.backends.cpu.get_cpu_capability() == "AVX512" and "AVX512F" not in found:
        found.append("AVX512F")
    return found


def _cuda_devices() -> list[dict]:
    if not torch.cuda.is_available():
        return []
    devices = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        cc = (p.major, p.minor)
        devices.append(
            {
                "index": i,
                "name": p.name,
                "memory_gb": round(p.total_memory / 2**30, 2),
                "compute_capability": f"{p.major}.{p.minor}",
                "bf16": cc >= (8, 0),
                "fp16": cc >= (5, 3),
                "tf32": cc >= (8, 0),
                "fp8": cc >= (8, 9),
                "sparse_2_4": cc >= (8, 0),
            }
        )
    return devices


def recommend(facts: dict) -> dict:
    """Derive the default paths from probed facts (pure, so it is testable on any machine)."""
    cuda = facts["cuda"]["devices"]
    isa = set(facts["cpu"]["isa"])
    cores = facts["cpu"]["physical_cores"] or facts["cpu"]["logical_cores"] or 1
    rec: dict = {}
    if cuda:
        best = cuda[0]
        rec["device"] = "cuda"
        rec["train_precision"] = "bf16" if best["bf16"] else "fp16"
        rec["infer_precision"] = "bf16" if best["bf16"] else "fp16"
        rec["quant_backend"] = "tensorrt" if facts["versions"].get("tensorrt") else "torchao"
        rec["tf32"] = best["tf32"]
    else:
        native_bf16 = bool(isa & {"AVX512_BF16", "AMX_BF16"})
        rec["device"] = "mps" if facts["mps"] else "cpu"
        # Without native bf16 dot products, bf16 on CPU is emulated and slower than fp32.
        rec["train_precision"] = "bf16" if native_bf16 else "fp32"
        rec["infer_precision"] = "bf16" if native_bf16 else "fp32"
        rec["quant_backend"] = "x86-inductor" if isa & {"AVX512_VNNI", "AVX_VNNI", "AMX_INT8"} else "onnxruntime"
        rec["tf32"] = False
    # fp16 on CPU is only worth it with native fp16 arithmetic (AVX512_FP16 / AMX-FP16).
    rec["fp16_on_cpu"] = "AVX512_FP16" in isa
    rec["threads"] = cores
    # Leave one core for the training/inference process itself.
    rec["dataloader_workers"] = max(0, min(8, cores - 1)) if not cuda else min(8, cores)
    rec["reasons"] = _reasons(facts, rec)
    return rec


def _reasons(facts: dict, rec: dict) -> list[str]:
    isa = set(facts["cpu"]["isa"])
    out = []
    if rec["device"] == "cpu":
        if rec["infer_precision"] == "bf16":
            out.append("CPU has native bf16 dot products (AVX512_BF16/AMX): use bf16 autocast.")
        else:
            out.append("CPU lacks native bf16: stay in fp32; bf16 would be emulated.")
        if isa & {"AVX512_VNNI", "AVX_VNNI", "AMX_INT8"}:
            out.append("CPU has int8 dot products (VNNI/AMX): static int8 via PT2E x86 Inductor quantizer.")
    else:
        out.append(f"CUDA present: {rec['train_precision']} autocast for training and inference.")
    out.append(f"{rec['threads']} compute threads; {rec['dataloader_workers']} DataLoader workers.")
    return out


def probe() -> dict:
    """Facts about this machine plus ``recommend``ations; JSON-serializable."""
    model, _ = _cpuinfo()
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
        mem_gb = round(psutil.virtual_memory().total / 2**30, 2)
    except ImportError:
        physical, mem_gb = None, None
    logical = os.cpu_count()
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = logical
    facts = {
        "cpu": {
            "model": model,
            "arch": platform.machine(),
            "logical_cores": affinity or logical,
            "physical_cores": min(physical or affinity or 1, affinity or physical or 1),
            "memory_gb": mem_gb,
            "isa": cpu_flags(),
            "torch_capability": torch.backends.cpu.get_cpu_capability(),
        },
        "cuda": {"available": torch.cuda.is_available(), "devices": _cuda_devices()},
        "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "onnxruntime": package_version("onnxruntime"),
            "torchao": package_version("torchao"),
            "openvino": package_version("openvino"),
            "nncf": package_version("nncf"),
            "torch_pruning": package_version("torch-pruning"),
            "transformers": package_version("transformers"),
            "tensorrt": package_version("tensorrt"),
        },
    }
    facts["recommend"] = recommend(facts)
    return facts
