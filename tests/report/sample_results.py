"""A small but realistic results set for the report tests: close latencies, long names, a failure."""

from accelkit.report.html import Summary
from accelkit.report.results import Results, VariantResult


def sample_results() -> Results:
    def v(name, lat, q, size=86.7, err=None):
        return VariantResult(
            name, speedup=54.2 / lat, throughput=256 / lat * 1000, throughput_unit="sentences/s",
            latency_ms={"p50": lat, "p95": lat * 1.08}, size_mb=size, peak_memory_mb=410.0,
            quality={"cosine_mean": q, "cosine_min": q - 0.04}, quality_drop=1.0 - q,
            meets_budget=(1.0 - q) <= 0.01, error=err,
        )

    variants = [
        v("baseline", 216.8, 1.0),
        v("dynamic-padding", 118.0, 1.0),
        v("dynamic-padding+bf16", 61.5, 0.9968, 43.4),
        v("dynamic-padding+int8-dynamic", 63.0, 0.9931, 23.1),
        v("prune-structured-50+bf16+onnx-int8-static", 19.4, 0.9874, 12.0),
        v("prune-structured-50+onnx-int8-static", 20.1, 0.9902, 12.0),
        VariantResult("onnx-int8-static", error="RuntimeError: ONNX export failed: Unsupported op aten::foo"),
    ]
    return Results("minilm", "infer", "baseline", variants, primary_metric="cosine_mean", max_quality_drop=0.01,
                   settings={"batch_size": 32, "items": 256, "repeats": 3},
                   machine={"cpu": {"model": "Test CPU", "logical_cores": 2, "isa": ["avx512_bf16"]},
                            "versions": {"torch": "2.13.0"}})


def sample_summary() -> Summary:
    return Summary(chosen="prune-structured-50+onnx-int8-static",
                   message="best plan prune-structured-50+onnx-int8-static: 2.70× at cosine_mean 0.9902",
                   model_path="out/minilm/model")
