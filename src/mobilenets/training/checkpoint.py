"""A run's full state on disk: written atomically, read with ``weights_only=True`` (tensors and plain values)."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import pickle
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import unpickling_detail
from ..io import BEST_DIR, CONFIG_FILE, WEIGHTS_FILE, atomic_write, is_model_dir, sweep_stale

CHECKPOINT = "checkpoint.pt"
RUN_CONFIG = "run.json"
FINAL_DIR = "final"  # the last epoch's model: the figure that involves no selection on the validation set


@dataclass
class RunState:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps completed
    step_in_epoch: int = 0
    best_score: float = float("-inf")  # the task's best_metric at best_epoch (higher is better)
    best_epoch: int = -1
    skipped: int = 0  # unreadable training samples skipped so far
    train_seconds: float = 0.0
    history: list[dict] = field(default_factory=list)
    # The current epoch's sums so far (images seen, loss, task stats, seconds, skipped), saved with a mid-epoch
    # checkpoint so that a resumed epoch's metrics.csv row counts the steps before the interruption too.
    partial: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> RunState:
        data = dict(data)
        if "best_top1" in data:  # checkpoints written before tasks chose their own metric
            data["best_score"] = data.pop("best_top1")
        return cls(**data)


def all_finite(model: nn.Module) -> bool:
    return all(torch.isfinite(p).all() for p in model.parameters())


def save_checkpoint(path: Path, model, optimizer, scheduler, ema, state: RunState, aug_gen, config: dict):
    """Write the run's full state atomically, as tensors and plain types only (it loads with weights_only=True)."""
    rng = {"torch": torch.get_rng_state(), "aug": aug_gen.get_state(), "python": list(random.getstate())}
    device = next(model.parameters()).device
    if device.type == "cuda":  # dropout on a GPU draws from the device's generator
        rng["cuda"] = torch.cuda.get_rng_state(device)
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "ema": ema.module.state_dict() if ema else None,
        "rng": rng,
        "state": dataclasses.asdict(state),
        "config": config,
    }
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def restore_rng(rng: dict, aug_gen: torch.Generator, device: torch.device) -> None:
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"], device)
    aug_gen.set_state(rng["aug"])
    python = rng["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))


def load_checkpoint(run_dir: Path) -> dict:
    """Read RUN_DIR/checkpoint.pt with weights_only=True: a run directory from elsewhere cannot run code."""
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} has no {CHECKPOINT} to resume from; start the run over with "
                                f"-o {run_dir} --overwrite")  # fmt: skip
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(f"refusing {path}: it holds objects other than tensors and plain values, which a "
                         f"mobilenets run never writes ({unpickling_detail(err)}); start the run over with "
                         f"-o {run_dir} --overwrite, or resume a run you made") from None  # fmt: skip
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the same to the user
        raise ValueError(f"{path} is not a readable checkpoint ({err.__class__.__name__}: {err})") from None


# What a run writes in its directory, and nothing else: ``--overwrite`` deletes these and leaves the rest.
RUN_FILES = (RUN_CONFIG, CHECKPOINT, "metrics.csv", "report.md", "report.json", "curves.png", "confusion.png",
             "predictions.png")  # fmt: skip
MODEL_FILES = (WEIGHTS_FILE, CONFIG_FILE)
TENSORBOARD_DIR = "tensorboard"


def is_run_dir(path: str | os.PathLike) -> bool:
    """``path`` holds a run of ours: a run.json that ``train`` wrote (a JSON object with its config and task)."""
    try:
        record = json.loads((Path(path) / RUN_CONFIG).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and isinstance(record.get("config"), dict) and isinstance(record.get("task"), str)


def clear_run(path: str | os.PathLike) -> list[Path]:
    """Delete what a run of ours wrote in ``path`` (``is_run_dir``), and only that: its files, best/ and final/,
    TensorBoard's event files, our dead processes' temporary files. A folder left empty by this goes; anything
    else (a user's notes, an export in best/) stays where it was."""
    path = Path(path)
    removed = []

    def unlink(file: Path) -> None:
        if file.is_file() or file.is_symlink():
            file.unlink()
            removed.append(file)

    def rmdir_if_empty(folder: Path) -> None:
        with contextlib.suppress(OSError):
            folder.rmdir()

    for name in (BEST_DIR, FINAL_DIR):
        folder = path / name
        # A model folder holding files of the user's (an export) keeps its model until the new run replaces it
        # in place: emptied of our two files it would be a folder of theirs, which save_model refuses to write.
        if is_model_dir(folder) and {p.name for p in folder.iterdir()} <= set(MODEL_FILES):
            for file in (folder / CONFIG_FILE, folder / WEIGHTS_FILE):  # the config first: never a half model
                unlink(file)
            rmdir_if_empty(folder)
    board = path / TENSORBOARD_DIR
    if board.is_dir() and not board.is_symlink():
        for file in board.glob("events.out.tfevents.*"):
            unlink(file)
        rmdir_if_empty(board)
    removed += sweep_stale(path)
    for name in (CHECKPOINT, *RUN_FILES[2:], RUN_CONFIG):  # run.json last: until then it is still a run
        unlink(path / name)
    return removed


@contextlib.contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run directory ``path`` (created if missing) while a run writes to it.

    flock on the directory itself: nothing is written for it, and the kernel drops it when the process dies.
    """
    created = not os.path.lexists(path)
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunInUseError(f"{path} is in use by another mobilenets process; wait for it to finish, or give "
                                "another -o directory") from None  # fmt: skip
        yield
    except BaseException:
        if created:  # a run that failed before writing anything leaves no empty folder of ours behind
            with contextlib.suppress(OSError):
                path.rmdir()
        raise
    finally:
        os.close(fd)


class RunInUseError(ValueError):
    """Another process is writing to the run directory."""
