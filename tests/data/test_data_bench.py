"""bench_data_variants: the shape of its rows and the results record (no timing thresholds)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from accelkit.data.bench import bench_data_task, bench_data_variants
from accelkit.data.tune_loader import LoaderTuneConfig
from accelkit.errors import UnknownVariantError, UnknownWorkloadError


@pytest.fixture
def small_workload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, digits_root_master: Path
) -> Path:
    import accelkit.data.images as images

    monkeypatch.setenv("ACCELKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(images, "render_digits_folder", lambda root=None, **kw: digits_root_master)
    return tmp_path


def test_rows_have_the_documented_keys_and_restore_threads(small_workload: Path) -> None:
    threads = torch.get_num_threads()
    tune = LoaderTuneConfig(batch_size=8, num_workers=(0,), batches_per_trial=2)
    rows = bench_data_variants(
        ["cached+tuned"], repeats=1, warmup=0, batch_size=8, tune_config=tune
    )
    assert torch.get_num_threads() == threads
    assert [r["name"] for r in rows] == ["naive", "cached+tuned"]  # naive always measured
    for r in rows:
        assert {"name", "throughput", "speedup", "wait_fraction"} <= set(r)
        assert r["throughput"] > 0 and 0.0 <= r["wait_fraction"] <= 1.0 and r["images"] == 40
    assert rows[0]["speedup"] == 1.0
    assert rows[1]["loader_kwargs"] == {"num_workers": 0, "pin_memory": False}


def test_unknown_variant_and_workload_are_refused(small_workload: Path) -> None:
    with pytest.raises(UnknownVariantError, match="fastest"):
        bench_data_variants(["fastest"])
    with pytest.raises(UnknownWorkloadError):
        bench_data_task(workload="minilm")


def test_task_writes_results_json(small_workload: Path, capsys: pytest.CaptureFixture) -> None:
    from accelkit.report.results import load_results

    out = small_workload / "r.json"
    bench_data_task(variants="cached", repeats=1, out=out)
    results = load_results(out)
    assert results.task == "data" and [v.name for v in results.variants] == ["naive", "cached"]
    assert results.variants[1].throughput_unit == "images/s"
    assert "consumer waits on data" in capsys.readouterr().out
