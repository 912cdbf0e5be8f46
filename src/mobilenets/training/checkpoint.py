"""A run's full state on disk: written atomically, read with ``weights_only=True`` (tensors and plain values)."""

from __future__ import annotations

import dataclasses
import os
import pickle
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import unpickling_detail
from ..io import atomic_write, is_model_dir

CHECKPOINT = "checkpoint.pt"
RUN_CONFIG = "run.json"
BEST_DIR = "best"
FINAL_DIR = "final"  # the last epoch's model: the figure that involves no selection on the validation set


def resolve_model_dir(path: str | os.PathLike) -> Path:
    """A model directory, or a training run directory's best model."""
    path = Path(path)
    if is_model_dir(path):
        return path
    if is_model_dir(path / BEST_DIR):
        return path / BEST_DIR
    raise FileNotFoundError(f"{path} is neither a model directory nor a training run with a {BEST_DIR}/ model; "
                            "give the directory `mobilenets train -o` wrote (or its best/)")  # fmt: skip


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


def is_run_dir(path: Path) -> bool:
    """``path`` holds a run of ours (its run.json or checkpoint)."""
    return (Path(path) / RUN_CONFIG).is_file() or (Path(path) / CHECKPOINT).is_file()
