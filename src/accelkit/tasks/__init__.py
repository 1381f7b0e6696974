"""Model tasks, one module each: a TaskSpec saying how a task's inputs are batched, which model
output it reads, how it reduces and scores that output; a new task is one new module."""

from accelkit.tasks.base import TaskSpec, pick_output
from accelkit.tasks.registry import get_task, infer_task, list_tasks, register_task

__all__ = ["TaskSpec", "get_task", "infer_task", "list_tasks", "pick_output", "register_task"]
