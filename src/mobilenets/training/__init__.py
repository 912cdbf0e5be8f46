"""Training: the loop every task shares (resumable, DDP), recipes, checkpoints, reports; classification data."""

from ..data.classification import DataSpec, load_data, load_idx_dir
from .engine import TrainConfig, TrainingDiverged, fit, read_run_config, resume_config, train
from .recipes import RECIPES, Recipe, get_recipe
from .task import Task

__all__ = [
    "RECIPES",
    "DataSpec",
    "Recipe",
    "Task",
    "TrainConfig",
    "TrainingDiverged",
    "evaluate",
    "evaluate_split",
    "fit",
    "get_recipe",
    "load_data",
    "load_idx_dir",
    "read_run_config",
    "resume_config",
    "train",
]


def __getattr__(name: str):
    # Classification's evaluation lives with its task (mobilenets.tasks.classification); these names stay here.
    if name in ("evaluate", "evaluate_split"):
        from ..tasks import classification

        return getattr(classification, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
