"""Training and evaluation: data, recipes, the loop (resumable, DDP), reports."""

from .data import DataSpec, load_data, load_idx_dir
from .engine import TrainConfig, TrainingDiverged, evaluate_split, read_run_config, resume_config, train
from .evaluate import evaluate
from .recipes import RECIPES, Recipe, get_recipe

__all__ = [
    "RECIPES",
    "DataSpec",
    "Recipe",
    "TrainConfig",
    "TrainingDiverged",
    "evaluate",
    "evaluate_split",
    "get_recipe",
    "load_data",
    "load_idx_dir",
    "read_run_config",
    "resume_config",
    "train",
]
