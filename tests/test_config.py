"""The configuration base class: every Config under accelkit round-trips through a JSON dict,
rejects unknown keys and newer versions, and known configs keep today's dict (cache keys)."""

from __future__ import annotations

import dataclasses
import importlib
import json
import pkgutil

import pytest

import accelkit
from accelkit.config import Config
from accelkit.errors import ConfigError

# configs with required fields: the values a round trip is tried with
_REQUIRED = {
    "LoaderTuneResult": dict(best_kwargs={"num_workers": 2}, table=[{"images_per_s": 1.0}], search="grid",
                             trials=3, elapsed_s=0.5, machine="x86_64", dataset_fingerprint=None),
}


def _config_classes() -> list[type]:
    found = {}
    for info in pkgutil.walk_packages(accelkit.__path__, "accelkit."):
        if info.name == "accelkit.__main__":  # runs the CLI on import
            continue
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Config) and obj is not Config:
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]


CONFIGS = _config_classes()


def test_every_config_is_found() -> None:
    names = {c.__name__ for c in CONFIGS}
    assert {"TrainConfig", "EarlyExitConfig", "SentenceDistillConfig", "StructuredPruneConfig"} <= names
    assert len(CONFIGS) >= 30


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_round_trip_through_json(cls: type) -> None:
    assert dataclasses.is_dataclass(cls)
    cfg = cls(**_REQUIRED.get(cls.__name__, {}))
    d = cfg.to_dict()
    again = cls.from_dict(json.loads(json.dumps(d)))  # lists where tuples were, as results.json holds it
    assert again == cfg
    assert again.to_dict() == d


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_unknown_key_is_rejected_with_the_known_ones(cls: type) -> None:
    d = {**cls(**_REQUIRED.get(cls.__name__, {})).to_dict(), "no_such_field": 1}
    with pytest.raises(ConfigError, match="no_such_field") as err:
        cls.from_dict(d)
    assert "known fields" in str(err.value)


def test_newer_version_is_rejected_naming_the_version_read() -> None:
    from accelkit.techniques.quantize import DynamicInt8Config

    with pytest.raises(ConfigError, match="this accelkit reads DynamicInt8Config version 1"):
        DynamicInt8Config.from_dict({"version": 2})
    assert DynamicInt8Config.from_dict({"version": 1}) == DynamicInt8Config()


def test_nested_configs_and_tuples_are_rebuilt() -> None:
    from accelkit.techniques.distill import ClassifierDistillConfig, LogitKDConfig
    from accelkit.techniques.prune import FineTuneConfig, StructuredPruneConfig

    cfg = StructuredPruneConfig.from_dict({"ignore": ["fc"], "finetune": {"epochs": 2}})
    assert cfg.ignore == ("fc",) and cfg.finetune == FineTuneConfig(epochs=2)
    kd = ClassifierDistillConfig.from_dict({"kd": {"temperature": 2.0}})
    assert kd.kd == LogitKDConfig(temperature=2.0)


# copied from the output of the hand-written to_dict()s this base replaced: a changed key here
# changes cache keys of trained students already on disk
def test_known_dicts_and_cache_keys_are_unchanged() -> None:
    from accelkit.techniques.distill import SentenceDistillConfig
    from accelkit.techniques.early_exit import EarlyExitConfig
    from accelkit.techniques.prune import FineTuneConfig, StructuredPruneConfig
    from accelkit.techniques.quantize import DynamicInt8Config

    base = SentenceDistillConfig()
    assert base.to_dict() == {
        "keep_layers": [0, 2, 4], "epochs": 3, "lr": 0.0001, "batch_size": 32, "max_length": 128,
        "mse_weight": 1.0, "token_weight": 0.0, "augment_copies": 0, "train_sentences": None, "seed": 0,
        "version": 1,
    }
    assert base.cache_key() == "5374ffe559ed"
    more = SentenceDistillConfig(extra_sentences="stdlib-docstrings", dropout=False, train_sentences=1000,
                                 init_from=base.to_dict())
    assert more.to_dict() == {
        "keep_layers": [0, 2, 4], "epochs": 3, "lr": 0.0001, "batch_size": 32, "max_length": 128,
        "mse_weight": 1.0, "token_weight": 0.0, "augment_copies": 0, "train_sentences": 1000,
        "extra_sentences": "stdlib-docstrings", "dropout": False, "init_from": base.to_dict(), "seed": 0,
        "version": 1,
    }
    assert more.cache_key() == "57313bbb2f6d"

    assert EarlyExitConfig().to_dict() == {
        "criterion": "confidence", "exit_after": None, "thresholds": None, "patience": 2, "training": "distill",
        "epochs": 300, "lr": 0.003, "weight_decay": 0.001, "temperature": 2.0, "head_pool": 4, "head_hidden": 0,
        "block_names": None, "final_names": None, "shift_augment": True, "seed": 0, "version": 1,
    }
    assert EarlyExitConfig(training="staged", exit_after=[1, 3], anchor_exit=3, joint_epochs=4).to_dict() == {
        "criterion": "confidence", "exit_after": [1, 3], "thresholds": None, "patience": 2, "training": "staged",
        "epochs": 300, "lr": 0.003, "joint_epochs": 4, "anchor_exit": 3, "weight_decay": 0.001,
        "temperature": 2.0, "head_pool": 4, "head_hidden": 0, "block_names": None, "final_names": None,
        "shift_augment": True, "seed": 0, "version": 1,
    }
    assert StructuredPruneConfig(ratio=0.25, ignore=("fc",), finetune=FineTuneConfig(epochs=2)).to_dict() == {
        "ratio": 0.25, "importance": "magnitude", "steps": 1, "ignore": ["fc"], "round_to": None,
        "taylor_batches": 4,
        "finetune": {"epochs": 2, "lr": 0.001, "batch_size": 64, "weight_decay": 0.0001, "seed": 0, "version": 1},
        "version": 1,
    }
    assert json.dumps(DynamicInt8Config().to_dict()) == (
        '{"per_channel": true, "module_types": ["Linear", "LSTM", "GRU"], "exclude": [], "version": 1}'
    )
