"""Early exit: light heads after chosen blocks let easy inputs leave the network early.

Buys: fewer blocks per sample; exited rows leave the batch, so later blocks run on fewer
rows and the saving shows in wall-clock. Costs: head training on calibration data, a
quality drop bounded by calibrated thresholds, and head overhead for rows that stay.

Layout: ``config`` (EarlyExitConfig), ``heads`` (ExitHead), ``model`` (EarlyExitModel and
apply_early_exit), ``training`` (+ ``_ridge``, ``_backbone_training``: the regimes),
``calibrate`` (thresholds within a quality budget), ``saving`` (save/load); the block lookup
is ``accelkit.techniques._blocks``, shared with layer skip and routed depth.
"""

from __future__ import annotations

# the private names are imported from this path by layer skip, routed depth and tests: kept importable
from accelkit.techniques._blocks import BlocksNotFoundError, _call, _first, find_blocks  # noqa: F401
from accelkit.techniques.early_exit._criteria import _normalized_entropy  # noqa: F401
from accelkit.techniques.early_exit._ridge import _ridge  # noqa: F401
from accelkit.techniques.early_exit.calibrate import (  # noqa: F401  (block_costs: public before the split)
    CalibrationResult,
    block_costs,
    calibrate_thresholds,
    collect_exit_outputs,
)
from accelkit.techniques.early_exit.config import (  # noqa: F401
    BACKBONE_TRAINING,
    CRITERIA,
    TRAINING,
    EarlyExitConfig,
)
from accelkit.techniques.early_exit.heads import ExitHead
from accelkit.techniques.early_exit.model import EarlyExitModel, apply_early_exit
from accelkit.techniques.early_exit.saving import load_early_exit, save_early_exit
from accelkit.techniques.early_exit.training import train_exit_heads_
from accelkit.techniques.early_exit.variant import (
    EARLY_EXIT_PRESETS,
    build_early_exit,
    extra_train_data,
)

__all__ = [
    "EARLY_EXIT_PRESETS",
    "BlocksNotFoundError",
    "CalibrationResult",
    "EarlyExitConfig",
    "EarlyExitModel",
    "ExitHead",
    "apply_early_exit",
    "build_early_exit",
    "calibrate_thresholds",
    "collect_exit_outputs",
    "extra_train_data",
    "find_blocks",
    "load_early_exit",
    "save_early_exit",
    "train_exit_heads_",
]
