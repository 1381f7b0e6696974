"""Training techniques: one module per technique (precision, compile, fused optimizer, memory
format, bf16 weights, length grouping), each a config dataclass and a pure apply function
registered beside it with a descriptor (group, what it needs, what it requires, what it buys and
costs). A training variant is a plan of them (``build_train_variant``); ``accelkit.train.bench``
names its variants by such plans."""

from accelkit.train.techniques.registry import (
    TrainingTechnique,
    TrainVariant,
    build_train_variant,
    composition_error,
    get_training_technique,
    list_training_techniques,
    register_training_technique,
)

__all__ = [
    "TrainVariant",
    "TrainingTechnique",
    "build_train_variant",
    "composition_error",
    "get_training_technique",
    "list_training_techniques",
    "register_training_technique",
]
