"""Worker script for the distributed tests: ``python train_ddp_worker.py OUT STRATEGY [DIE_AT_STEP]``.

Trains SmallCNN on 512 digits at a global batch of 32 (micro 8); run alone or under torchrun.
With DIE_AT_STEP, rank 1 exits abruptly at that step on torchrun's first attempt only.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402
from train_testkit import make_model  # noqa: E402

from accelkit.train import TrainConfig, train  # noqa: E402


def config(out: str, strategy: str = "ddp", resume: bool = False) -> TrainConfig:
    return TrainConfig(micro_batch_size=8, target_batch_size=32, lr=3e-3, lr_scaling="none", epochs=2, warmup_steps=2,
                       progress=False, seed=3, output_dir=out, checkpoint_every=8, strategy=strategy, grad_clip_norm=1.0,
                       resume=resume)


def dataset() -> TensorDataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    return TensorDataset(torch.tensor(d.data[:512], dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0, torch.tensor(d.target[:512]))


def main() -> None:
    import faulthandler

    faulthandler.dump_traceback_later(150, exit=True)  # a hung worker prints where it hangs, then exits
    torch.set_num_threads(1)
    out, strategy = sys.argv[1], sys.argv[2]
    die_at = int(sys.argv[3]) if len(sys.argv) > 3 else None
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"

    def maybe_die(record: dict) -> None:
        if die_at is not None and first_attempt and os.environ.get("RANK") == "1" and record["step"] == die_at:
            os._exit(17)  # a worker crash: torchrun tears the group down and restarts it

    train(make_model(), dataset(), F.cross_entropy, config(out, strategy, resume=die_at is not None), on_step=maybe_die)


if __name__ == "__main__":
    main()
