"""Tasks: what a model predicts and how it is trained, measured, shown and used (classification, detection...).

The task table: a task's name -> its ``Task`` subclass, which the engine trains and every command consults
(``train``, ``eval``, ``predict``), so that nothing outside a task's own files names it. The built-in tasks
are listed by module, imported when first asked for; a new task is new files: a module that defines a
``Task`` subclass and calls ``register_task`` on it (a package outside this one can do the same from an
entry point in the ``mobilenets.tasks`` group). A model's task is its registry entry's (``task_of``).

This module imports nothing of the training side, so that the engine below the tasks can consult it.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

# name -> module that defines and registers it (``TASK = ...``), imported on first use
_BUILTIN = {
    "classification": "mobilenets.tasks.classification",
    "detection": "mobilenets.tasks.detection.task",
    "segmentation": "mobilenets.tasks.segmentation",
}
ENTRY_POINT_GROUP = "mobilenets.tasks"
_TABLE: dict[str, type] = {}


def register_task(task_class: type) -> type:
    """Add ``task_class`` (a ``mobilenets.training.Task`` subclass with a unique ``name``) to the table."""
    name = getattr(task_class, "name", None)
    if not isinstance(name, str) or not name or name == "task":
        raise ValueError(f"{task_class.__name__} needs a class attribute `name` (what it predicts)")
    if _TABLE.get(name, task_class) is not task_class:
        raise ValueError(f"task {name!r} is registered twice ({_TABLE[name].__name__}, {task_class.__name__})")
    _TABLE[name] = task_class
    return task_class


def _plugins() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def task_names() -> list[str]:
    """Every task the table knows: built in, registered, or offered by an installed package."""
    return sorted({*_BUILTIN, *_TABLE, *_plugins()})


def get_task(name: str) -> type:
    """The ``Task`` subclass named ``name``."""
    if name not in _TABLE:
        if name in _BUILTIN:
            importlib.import_module(_BUILTIN[name])
        elif name in (plugins := _plugins()):
            plugins[name].load()
    if name not in _TABLE:
        raise ValueError(f"no task {name!r}; the tasks are {', '.join(task_names())}")
    return _TABLE[name]


def task_of(model) -> str:
    """The task of a model: a registered name's entry, or a built model's (by its ``name``); else classification."""
    from ..registry import get_entry, list_models

    name = model if isinstance(model, str) else getattr(model, "name", None)
    return get_entry(name).task if name in list_models() else "classification"
