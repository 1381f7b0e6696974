import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from train_testkit import SmallCNN, make_model

from accelkit.errors import ConfigError
from accelkit.train import (
    CheckpointError,
    TrainConfig,
    latest_checkpoint,
    load_checkpoint,
    load_weights,
    save_weights,
    train,
)


def _cfg(out, **kw):
    # 512 samples / 32 = 16 steps per epoch, 2 epochs; dropout makes the RNG state matter
    base = dict(micro_batch_size=16, target_batch_size=32, lr=3e-3, epochs=2, warmup_steps=4, progress=False,
                seed=3, output_dir=str(out), checkpoint_every=4, grad_clip_norm=1.0)
    base.update(kw)
    return TrainConfig(**base)


def _losses(out):
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def unbroken(digits_dataset, tmp_path_factory):
    """The reference: one uninterrupted run (its loss curve and final weights)."""
    torch.set_num_threads(1)  # as in every test here (the autouse fixture is function-scoped)
    out = tmp_path_factory.mktemp("unbroken")
    model = make_model(dropout=0.2)
    train(model, digits_dataset, F.cross_entropy, _cfg(out))
    return _losses(out), {k: v.clone() for k, v in model.state_dict().items()}


def test_stopped_and_resumed_run_equals_unbroken_run_bitwise(digits_dataset, tmp_path, unbroken):
    # two time slices of 13 then the rest: the second slice resumes from the step-13 checkpoint
    first = train(make_model(dropout=0.2), digits_dataset, F.cross_entropy, _cfg(tmp_path / "sliced", stop_after_steps=13))
    assert first.steps_done == 13 and first.checkpoint_path.endswith("step-00000013")
    resumed_model = make_model(seed=99, dropout=0.2)  # different init: everything must come from the checkpoint
    second = train(resumed_model, digits_dataset, F.cross_entropy, _cfg(tmp_path / "sliced", resume=True))
    assert second.resumed_from_step == 13 and second.steps_done == 32
    assert _losses(tmp_path / "sliced") == unbroken[0]  # bitwise, fp32 CPU
    for k, v in unbroken[1].items():
        assert torch.equal(resumed_model.state_dict()[k], v), k


_KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    import torch, torch.nn.functional as F
    from torch.utils.data import TensorDataset
    from sklearn.datasets import load_digits
    sys.path.insert(0, {testdir!r})
    from train_testkit import make_model
    from accelkit.train import TrainConfig, train
    torch.set_num_threads(1)
    d = load_digits()
    ds = TensorDataset(torch.tensor(d.data[:512], dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0, torch.tensor(d.target[:512]))
    config = TrainConfig(**{config!r})
    def die(record):
        if record["step"] == {kill_at}:
            os.kill(os.getpid(), signal.SIGKILL)
    train(make_model(dropout=0.2), ds, F.cross_entropy, config, on_step=die)
""")


@pytest.mark.slow  # a subprocess (~10-30 s on the shared box); the stop/resume test above is the fast check
def test_sigkilled_run_resumes_to_the_unbroken_loss_curve_bitwise(digits_dataset, tmp_path, unbroken):
    killed_dir = tmp_path / "killed"
    script = tmp_path / "killed_run.py"
    config = _cfg(killed_dir).to_dict()
    # killed mid-epoch 2 (steps 17..32), three steps after the step-20 checkpoint
    script.write_text(_KILLED_RUN.format(testdir=os.path.dirname(__file__), config=config, kill_at=23))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert len(_losses(killed_dir)) == 23 and latest_checkpoint(killed_dir / "checkpoints").name == "step-00000020"
    result = train(make_model(dropout=0.2), digits_dataset, F.cross_entropy, _cfg(killed_dir, resume=True))
    assert result.resumed_from_step == 20
    assert _losses(killed_dir) == unbroken[0]
    assert not [p for p in (killed_dir / "checkpoints").iterdir() if ".tmp" in p.name]


def test_resume_without_checkpoint_starts_fresh_and_keeps_only_newest(digits_dataset, tmp_path):
    result = train(make_model(), digits_dataset, F.cross_entropy, _cfg(tmp_path, resume=True, max_steps=12, keep_checkpoints=2))
    assert result.resumed_from_step is None and result.steps_done == 12
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest.json", "step-00000008", "step-00000012"]


def test_resume_with_another_effective_batch_is_refused(digits_dataset, tmp_path):
    train(make_model(), digits_dataset, F.cross_entropy, _cfg(tmp_path, max_steps=4))
    with pytest.raises(ConfigError, match="effective batch 32"):
        train(make_model(), digits_dataset, F.cross_entropy, _cfg(tmp_path, resume=True, target_batch_size=64))


def test_checkpoint_from_another_model_names_keys_and_loads_nothing(digits_dataset, tmp_path):
    train(make_model(), digits_dataset, F.cross_entropy, _cfg(tmp_path, max_steps=4))
    ckpt = latest_checkpoint(tmp_path / "checkpoints")
    other = SmallCNN(width=4)
    other.extra = torch.nn.Linear(2, 2)
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(ckpt, other)
    message = str(info.value)
    assert "missing keys ['extra.bias', 'extra.weight']" in message and "conv.weight (8, 1, 3, 3) vs model (4, 1, 3, 3)" in message
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())  # never a partial load


class _SameShapesOtherModel(SmallCNN):
    """Another architecture whose parameters happen to have the same names and shapes."""


def test_resume_into_another_model_is_refused_by_its_fingerprint_before_loading(digits_dataset, tmp_path):
    train(make_model(), digits_dataset, F.cross_entropy, _cfg(tmp_path, max_steps=4))
    meta = json.loads((latest_checkpoint(tmp_path / "checkpoints") / "meta.json").read_text())
    assert meta["model_fingerprint"]["architecture"] == "SmallCNN" and meta["model_fingerprint"]["tensors"] == 4
    torch.manual_seed(9)
    other = _SameShapesOtherModel()
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"written by another model \(SmallCNN, 4 tensors.*than the one resumed "
                                              r"\(_SameShapesOtherModel"):
        train(other, digits_dataset, F.cross_entropy, _cfg(tmp_path, resume=True, max_steps=8))
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())
    wider = SmallCNN(width=16)  # another shape of the same class: refused by the same line
    with pytest.raises(CheckpointError, match="written by another model"):
        train(wider, digits_dataset, F.cross_entropy, _cfg(tmp_path, resume=True, max_steps=8))
    resumed = train(make_model(), digits_dataset, F.cross_entropy, _cfg(tmp_path, resume=True, max_steps=8))
    assert resumed.resumed_from_step == 4  # the checkpoint was left as it was


@pytest.mark.parametrize("name", ["model.safetensors", "train_state.pt"])
def test_truncated_checkpoint_file_is_a_clear_error(digits_dataset, tmp_path, name):
    train(make_model(), digits_dataset, F.cross_entropy, _cfg(tmp_path, max_steps=4))
    ckpt = latest_checkpoint(tmp_path / "checkpoints")
    data = (ckpt / name).read_bytes()
    (ckpt / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(ckpt, make_model())


def test_tied_weights_round_trip(tmp_path):
    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(5, 3)
            self.head = torch.nn.Linear(3, 5, bias=False)
            self.head.weight = self.embed.weight

    src, dst = Tied(), Tied()
    save_weights(src.state_dict(), tmp_path / "w.safetensors")
    load_weights(dst, tmp_path / "w.safetensors")
    assert torch.equal(dst.head.weight, src.embed.weight) and dst.head.weight is dst.embed.weight
