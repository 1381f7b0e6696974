import os
import sys

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from train_ddp_worker import config, dataset
from train_testkit import make_model

from accelkit.errors import ConfigError, DeviceUnavailableError
from accelkit.train import TrainConfig, train
from accelkit.train.distributed import LaunchConfig, launch, torchrun_command

WORKER = os.path.join(os.path.dirname(__file__), "train_ddp_worker.py")
# 2 processes x (micro 8 x accumulation 2) == 1 process x (micro 8 x accumulation 4): the same
# global batches of 32; only the order of float additions differs (all-reduce vs accumulation)
TOLERANCE = dict(rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def one_process_weights(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("one")
    result = train(make_model(), dataset(), F.cross_entropy, config(str(out)))
    assert result.accumulation_steps == 4 and result.world_size == 1
    return load_file(out / "checkpoints" / "step-00000032" / "model.safetensors")


def _run_two(out, strategy="ddp", die_at=None, max_restarts=0):
    target = [WORKER, str(out), strategy] + ([str(die_at)] if die_at else [])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    return launch(LaunchConfig(nproc_per_node=2, max_restarts=max_restarts, monitor_interval=0.5), target, env=env,
                  timeout_s=400)  # a hang fails the test instead of stalling CI


def _assert_same_weights(path, reference):
    weights = load_file(path)
    assert weights.keys() == reference.keys()
    for k, v in reference.items():
        torch.testing.assert_close(weights[k], v, **TOLERANCE)


def test_two_gloo_ddp_processes_reach_the_one_process_weights(tmp_path, one_process_weights):
    assert _run_two(tmp_path) == 0
    _assert_same_weights(tmp_path / "checkpoints" / "step-00000032" / "model.safetensors", one_process_weights)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 32  # rank 0 alone logs


@pytest.mark.slow
def test_two_gloo_fsdp_processes_reach_the_one_process_weights(tmp_path, one_process_weights):
    assert _run_two(tmp_path, strategy="fsdp") == 0
    _assert_same_weights(tmp_path / "checkpoints" / "step-00000032" / "model.safetensors", one_process_weights)


@pytest.mark.slow
def test_a_crashed_worker_is_restarted_by_torchrun_and_resumes(tmp_path, one_process_weights):
    # rank 1 dies at step 13 (checkpoint at 8); torchrun restarts both workers, which resume from step 8
    assert _run_two(tmp_path, die_at=13, max_restarts=1) == 0
    _assert_same_weights(tmp_path / "checkpoints" / "step-00000032" / "model.safetensors", one_process_weights)
    steps = [int(line.split('"step": ')[1].split(",")[0]) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 33))  # the records after step 8 were rewritten by the resumed run


def test_torchrun_command_flags():
    single = torchrun_command(LaunchConfig(nproc_per_node=4, max_restarts=2), ["accelkit", "train"], module=True)
    assert single[1:] == ["-m", "torch.distributed.run", "--nproc-per-node", "4", "--max-restarts", "2", "--standalone",
                          "-m", "accelkit", "train"]
    multi = torchrun_command(LaunchConfig(nproc_per_node=2, nnodes="2", node_rank=1, rdzv_endpoint="head:29400", rdzv_id="job7"), ["x.py"])
    assert "--standalone" not in multi
    assert multi[-11:] == ["--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", "head:29400", "--rdzv-id", "job7",
                           "--node-rank", "1", "x.py"][-11:]


def test_bad_launch_and_device_requests():
    with pytest.raises(ConfigError, match="needs rdzv_endpoint"):
        LaunchConfig(nproc_per_node=2, nnodes="2")
    with pytest.raises(ConfigError, match="nproc_per_node=0"):
        LaunchConfig(nproc_per_node=0)
    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailableError, match="no CUDA GPU"):
            train(make_model(), dataset(), F.cross_entropy, TrainConfig(device="cuda", progress=False))
