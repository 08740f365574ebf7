"""The task types of a study, one plugin module each; `TASKS` maps a type's name to its plugin.

To add a task type, add a module here with a `TaskType` subclass (see `study.protocol.tasks.base`) and
register it below, plus its view in `ui/` if the generic trial form does not fit.
"""
from __future__ import annotations

from study.protocol.tasks.agreement import Agreement
from study.protocol.tasks.base import (KNOWN_METHODS, Condition, ExampleRequest, MapRequest, Measure, NoOptions, PhotoRequest, Predictions,
                                       TaskConfig, TaskType, Unit, UnitContext)
from study.protocol.tasks.class_discrimination import ClassDiscrimination
from study.protocol.tasks.compare import Compare
from study.protocol.tasks.distinction import Distinction
from study.protocol.tasks.examples import Examples
from study.protocol.tasks.rating import Rating
from study.protocol.tasks.spec import TrialSpec
from study.protocol.tasks.trust import Trust
from study.protocol.tasks.utility import Utility

__all__ = ["KNOWN_METHODS", "TASKS", "Condition", "ExampleRequest", "MapRequest", "Measure", "NoOptions", "PhotoRequest", "Predictions",
           "TaskConfig", "TaskType", "TrialSpec", "Unit", "UnitContext", "register"]

TASKS: dict[str, TaskType] = {}


def register(task: TaskType) -> TaskType:
    """Add a task type to `TASKS`; a name can be taken once."""
    if not task.name or task.name in TASKS:
        raise ValueError(f"task type {task.name!r} is {'already registered' if task.name else 'unnamed'}")
    TASKS[task.name] = task
    return task


# Config order of the papers' tasks (error messages and codebooks list them in this order).
for _plugin in (ClassDiscrimination, Compare, Rating, Trust, Distinction, Agreement, Examples, Utility):
    register(_plugin())
