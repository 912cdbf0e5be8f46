"""What a task hands the training engine: the model, the data, the loss, the metrics and the pictures.

The engine (``mobilenets.training.engine.fit``) owns everything tasks share: recipes, param
groups, the lr schedule, EMA, gradient accumulation, channels_last/bf16, atomic checkpoints and
exact resume, the NaN guard, DDP, progress, CSV/TensorBoard, the best model and the report.
A new task is a new subclass, added to the task table (``mobilenets.tasks.register_task``); the loop is
never copied. Beyond training, a task says how its saved models are evaluated (``evaluate_saved``,
``eval_lines``), how a finished run is summed up (``headline``) and how it predicts (``predict``): the
commands ask the task table and name no task.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn


class Task(abc.ABC):
    """Subclass and fill in every abstract method; ``fit(task, config)`` calls them in this order.

    A batch is ``(inputs, targets, skipped)``: ``inputs`` an NCHW tensor, ``targets`` whatever the
    task's loss takes (moved by ``targets_to``), ``skipped`` how many unreadable samples the batch
    dropped. ``best_metric`` names the ``evaluate`` key (higher is better) that picks the best epoch.
    """

    name = "task"
    best_metric = "score"
    default_recipe = "fast"  # the recipe when the run names none

    @abc.abstractmethod
    def setup(self, config, recipe, *, run_dir: Path, resume: bool) -> nn.Module:
        """Read the data and build the model (weights initialised, or loaded from ``config.init``)."""

    @abc.abstractmethod
    def describe(self) -> str:
        """One line for the log: the data and its splits."""

    @abc.abstractmethod
    def record(self) -> dict:
        """What ``run.json`` keeps beside the config (labels, preprocessing, the data's parameters)."""

    @abc.abstractmethod
    def train_size(self) -> int:
        """The number of training samples (an epoch's order is a permutation of them)."""

    @abc.abstractmethod
    def train_batches(
        self,
        order: torch.Tensor,
        batch_size: int,
        *,
        generator: torch.Generator,
        workers: int,
        shard: tuple[int, int],
        start: int,
        loader_seed: int,
    ) -> Iterator[tuple[torch.Tensor, Any, int]]:
        """Batches of ``order`` from batch ``start`` on, augmented with ``generator``; ``shard`` = (rank, world).

        ``loader_seed`` depends on the run's seed and the epoch alone: augmentation drawn in DataLoader
        workers must be seeded from it and each sample's position in ``order`` (``data.loader.seeded_loader``),
        so that a resumed epoch and any worker count give the same batches.
        """

    def targets_to(self, targets: Any, device: torch.device) -> Any:
        return targets.to(device)

    def batch_targets(self, inputs: torch.Tensor, targets: Any) -> Any:
        """The targets the loss sees for this (augmented, on-device) batch; e.g. with a teacher's outputs added."""
        return targets

    def split_targets(self, targets: Any, index: int, parts: int) -> Any:
        """The targets of micro-batch ``index`` of ``parts`` (inputs are split as ``x[index::parts]``)."""
        return targets[index::parts]

    @abc.abstractmethod
    def loss(self, outputs: Any, targets: Any, recipe) -> tuple[torch.Tensor, dict[str, float]]:
        """The batch's mean loss, and per-batch sums of training statistics (divided by samples seen)."""

    @abc.abstractmethod
    def evaluate(self, model: nn.Module, *, device, channels_last: bool, bf16: bool, workers: int, batch_size: int):
        """Validation metrics (floats, ``best_metric`` among them; other keys may hold lists)."""

    @abc.abstractmethod
    def save_model(self, model: nn.Module, directory: Path, metadata: dict) -> None:
        """Write ``model`` as a model directory (replacing the one there: the previous best)."""

    @abc.abstractmethod
    def report(self, out: Path, best_dir: Path, *, config, recipe, state, wall_seconds: float) -> dict:
        """The final evaluation of the best model, the report's pictures, and the run's summary."""

    # --- what the commands ask of a task (classmethods: no data is loaded for them) -----------------------

    @classmethod
    def evaluate_saved(cls, path: Path, data: str | None, *, limit: int, batch_size: int, workers: int,
                       device: str, tta: bool) -> dict:  # fmt: skip
        """``mobilenets eval``: the metrics of a run's model (or a model directory) on ``data`` (the run's own
        when None), with ``model``, ``data`` and ``images`` keys beside the task's figures."""
        raise NotImplementedError(f"{cls.name} models cannot be evaluated from the command line yet")

    @classmethod
    def eval_lines(cls, metrics: dict) -> list[str]:
        """What ``mobilenets eval`` prints of ``evaluate_saved``'s metrics."""
        figures = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float))
        return [f"{metrics.get('model')} on {metrics.get('data')} ({metrics.get('images')} images): {figures}"]

    @classmethod
    def headline(cls, summary: dict) -> str:
        """The figures ``mobilenets train`` prints of ``report``'s summary (after the model's name)."""
        return "  ".join(f"{k} {v:.4g}" for k, v in summary.items() if isinstance(v, float))

    @classmethod
    def predict(cls, model: nn.Module, paths: list[Path], device, *, topk: int, min_score: float):
        """``mobilenets predict``: for each image of ``paths`` (one batch), ``(result, draw)``: the JSON-ready
        result dict, and a function that returns the picture (uint8 3 x H x W) ``--save`` writes."""
        raise NotImplementedError(f"{cls.name} models cannot predict from the command line yet")
