"""Training acceleration: one loop for any nn.Module, each acceleration a TrainConfig switch.

Mixed precision (bf16, fp16 + GradScaler), torch.compile, channels-last, fused optimizers,
gradient accumulation with LR scaling, warm-up + cosine, DDP/FSDP under torchrun, atomic
checkpoints with exact resume, and a batch-size finder.
"""

from accelkit.train.batch_finder import (
    BatchProbe,
    BatchSizeError,
    BatchSizeResult,
    find_max_batch_size,
)
from accelkit.train.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    load_weights,
    save_weights,
)
from accelkit.train.config import PRECISIONS, TrainConfig
from accelkit.train.loop import TrainingDivergedError, TrainResult, train
from accelkit.train.precision import autocast_context, make_grad_scaler
from accelkit.train.schedule import lr_at_step

__all__ = [
    "BatchProbe",
    "BatchSizeError",
    "BatchSizeResult",
    "find_max_batch_size",
    "PRECISIONS",
    "CheckpointError",
    "TrainConfig",
    "TrainResult",
    "TrainingDivergedError",
    "autocast_context",
    "latest_checkpoint",
    "load_checkpoint",
    "load_weights",
    "lr_at_step",
    "make_grad_scaler",
    "save_weights",
    "train",
]
