"""The task registry: every task module registers itself, names are checked, and a model
folder's architectures pick its task."""

from __future__ import annotations

import subprocess
import sys

import pytest

from accelkit.errors import ConfigError, ModelFolderError
from accelkit.tasks import TaskSpec, get_task, infer_task, list_tasks, register_task
from accelkit.tasks.registry import _TASKS


def test_every_task_module_registers_its_task():
    assert {"feature-extraction", "sentence-embedding", "text-classification", "causal-lm",
            "image-classification", "token-classification"} <= set(list_tasks())
    for name in list_tasks():
        spec = get_task(name)
        assert spec.name == name and spec.primary_metric and spec.inputs in ("text", "images")


def test_an_unknown_task_names_the_choices():
    with pytest.raises(ConfigError, match="--task 'translation': expected one of .*causal-lm"):
        get_task("translation")


@pytest.mark.parametrize("archs, st, task", [
    (["BertModel"], False, "feature-extraction"),
    (["GPT2LMHeadModel"], False, "causal-lm"),  # ends with "Model" too: the head wins
    (["LlamaForCausalLM"], False, "causal-lm"),
    (["BertForSequenceClassification"], False, "text-classification"),
    (["BertForTokenClassification"], False, "token-classification"),
    (["ResNetForImageClassification"], False, "image-classification"),
    (["BertModel"], True, "sentence-embedding"),
])
def test_architectures_pick_the_task(archs, st, task):
    assert infer_task(archs, st) == task


@pytest.mark.parametrize("archs", [[], ["BertForMaskedLM"], ["BertModel", "BertForMaskedLM"]])
def test_architectures_no_task_claims_ask_for_task(archs):
    with pytest.raises(ModelFolderError, match="pass --task, one of"):
        infer_task(archs)


def test_a_task_with_a_bad_attribute_is_refused_at_registration():
    class Bad(TaskSpec):
        name = "bad-task"
        inputs = "audio"

    with pytest.raises(ConfigError, match="inputs 'audio'"):
        register_task(Bad)
    assert "bad-task" not in _TASKS


def test_two_tasks_of_one_name_are_refused():
    class Twin(TaskSpec):
        name = "causal-lm"

    with pytest.raises(ConfigError, match="registered twice"):
        register_task(Twin)
    assert type(get_task("causal-lm")).__name__ == "CausalLM"


def test_listing_tasks_loads_neither_torch_nor_transformers():
    code = ("import sys; from accelkit.tasks import list_tasks; list_tasks(); "
            "print([m for m in ('torch', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_registered_task_is_read_only():
    with pytest.raises(AttributeError, match="read-only"):
        get_task("causal-lm").primary_metric = "accuracy"
