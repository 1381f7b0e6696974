import pytest
import torch
import torch.nn.functional as F
from train_testkit import LossThatIsKilledAbove, SmallCNN

from accelkit.errors import ConfigError
from accelkit.train.batch_finder import BatchProbe, BatchSizeError, _search_cpu, find_max_batch_size

X = torch.rand(4, 1, 8, 8)
Y = torch.tensor([0, 1, 2, 3])


class FakeProber:
    """Memory = 300 MB + 2 MB per sample; throughput saturates at 1000/s from batch 64 on."""

    def __init__(self, log):
        self.log = log
        self.alive = True

    def probe(self, b):
        self.log.append(b)
        return BatchProbe(b, True, samples_per_s=1000 * min(b, 64) / 64 * (1 - 0.001 * (b > 64)), peak_memory_mb=300 + 2 * b)

    def close(self):
        pass


def test_search_stops_past_the_throughput_peak_and_picks_the_smallest_fastest_size():
    tried = []
    result = _search_cpu(lambda: FakeProber(tried), budget_mb=10_000, max_batch_size=4096, patience=3, tolerance=0.03, progress=None)
    exhaustive_best = max(1000 * min(b, 64) / 64 for b in [2**i for i in range(13)])
    chosen = result.verified
    assert result.batch_size == 64 and chosen.samples_per_s >= 0.9 * exhaustive_best
    assert max(tried) < 4096  # it did not sweep everything to find the plateau


def test_sizes_predicted_over_budget_are_not_tried():
    tried = []
    result = _search_cpu(lambda: FakeProber(tried), budget_mb=300 + 2 * 40, max_batch_size=4096, patience=99, tolerance=0.03, progress=None)
    assert result.batch_size == 32 and 64 not in tried  # 64 would need 428 MB > 380 MB
    assert result.curve[-1].batch_size == 64 and result.curve[-1].predicted_memory_mb == pytest.approx(428)


@pytest.mark.slow  # ~10-20 s of subprocess probes; the killed-probe test covers the process path by default
def test_cpu_finder_measures_in_a_subprocess_and_verifies_its_choice():
    result = find_max_batch_size(SmallCNN(), X, Y, F.cross_entropy, device="cpu", max_batch_size=64, steps=2)
    fitted = [p for p in result.curve if p.fits]
    assert result.batch_size in [p.batch_size for p in fitted]  # never a size it did not try
    chosen = next(p for p in fitted if p.batch_size == result.batch_size)
    assert chosen.samples_per_s >= 0.97 * max(p.samples_per_s for p in fitted)
    assert result.verified.fits and result.verified.batch_size == result.batch_size
    assert all(0 < p.peak_memory_mb <= result.memory_budget_mb for p in fitted)


def test_a_killed_probe_does_not_kill_the_caller():
    result = find_max_batch_size(SmallCNN(), X, Y, LossThatIsKilledAbove(4), device="cpu", max_batch_size=64,
                                 steps=1, patience=100)
    dead = result.curve[-1]
    assert dead.batch_size == 8 and not dead.fits and "died" in dead.error
    assert result.batch_size <= 4 and result.verified.fits  # verified in a fresh process


def test_model_that_does_not_fit_at_batch_one_raises():
    with pytest.raises(BatchSizeError, match="does not fit at batch size 1 under the memory budget of 100 MB"):
        _search_cpu(lambda: FakeProber([]), budget_mb=100, max_batch_size=64, patience=3, tolerance=0.03, progress=None)


@pytest.mark.slow
def test_model_that_does_not_fit_at_batch_one_raises_from_a_real_probe():
    with pytest.raises(BatchSizeError, match="does not fit at batch size 1"):
        find_max_batch_size(SmallCNN(), X, Y, F.cross_entropy, device="cpu", memory_budget_mb=1.0, steps=1)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="memory_fraction=1.5"):
        find_max_batch_size(SmallCNN(), X, Y, F.cross_entropy, memory_fraction=1.5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: grow-then-bisect on OutOfMemoryError")
def test_cuda_finder_bisects_to_the_largest_fit():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4096), torch.nn.ReLU(), torch.nn.Linear(4096, 10))
    result = find_max_batch_size(model, X, Y, F.cross_entropy, device="cuda", max_batch_size=2**14, steps=1)
    assert result.verified.fits and result.objective == "largest_fit"
    assert result.batch_size <= max(p.batch_size for p in result.curve if p.fits)
