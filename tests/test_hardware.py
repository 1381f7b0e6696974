import json

from accelkit.hardware import probe, recommend


def _facts(isa, cuda=()):
    return {
        "cpu": {"isa": list(isa), "physical_cores": 4, "logical_cores": 8},
        "cuda": {"devices": list(cuda)},
        "mps": False,
        "versions": {},
    }


def test_probe_is_json_and_lists_this_cpus_flags():
    facts = probe()
    json.dumps(facts)
    flags = set(open("/proc/cpuinfo").read().split())
    if "avx512_bf16" in flags:
        assert "AVX512_BF16" in facts["cpu"]["isa"]
    if "avx512_vnni" in flags:
        assert "AVX512_VNNI" in facts["cpu"]["isa"]
    assert facts["versions"]["torch"]
    assert facts["recommend"]["threads"] >= 1


def test_recommendations_follow_the_isa():
    no_bf16 = recommend(_facts(["AVX2"]))
    assert no_bf16["infer_precision"] == "fp32"
    assert no_bf16["quant_backend"] == "onnxruntime"
    bf16 = recommend(_facts(["AVX2", "AVX512_BF16", "AVX512_VNNI"]))
    assert bf16["infer_precision"] == "bf16"
    assert bf16["quant_backend"] == "x86-inductor"
    assert bf16["dataloader_workers"] == 3


def test_cuda_without_bf16_recommends_fp16():
    t4 = {"name": "T4", "bf16": False, "fp16": True, "tf32": False, "fp8": False, "sparse_2_4": False}
    rec = recommend(_facts(["AVX2"], [t4]))
    assert rec["device"] == "cuda"
    assert rec["train_precision"] == "fp16"
