"""Evaluate a run directory (its best model) or a model directory on a dataset split."""

from __future__ import annotations

from pathlib import Path

import torch


def evaluate(
    path: str | Path,
    data: str = "fashion-mnist",
    *,
    batch_size: int = 256,
    limit: int = 0,
    workers: int = 2,
    tta: bool = False,
    device: str = "cpu",
    progress: bool = True,
) -> dict:
    """Top-1/top-5 (percent), loss and confusion matrix of a trained model on ``data``'s val/test split.

    ``tta``: average the logits of each image and its horizontal mirror. ``device``: "cpu", "cuda"
    or "cuda:N". ``progress``: a bar over the batches when stderr is a terminal.
    """
    from ..devices import resolve_device
    from ..io import CONFIG_FILE, load_model
    from .data import load_data
    from .engine import BEST_DIR, evaluate_split

    target = resolve_device(device)  # before any loading: a wrong --device is the first error

    path = Path(path)
    if (path / BEST_DIR / CONFIG_FILE).is_file():
        path = path / BEST_DIR
    elif not (path / CONFIG_FILE).is_file():
        raise FileNotFoundError(
            f"{path} is neither a run directory (with {BEST_DIR}/) nor a model directory (with {CONFIG_FILE})"
        )
    model = load_model(path)
    spec = load_data(data, preprocessing=model.preprocessing, in_chans=model.in_chans, val_limit=limit, train_limit=1)
    if len(spec.labels) != model.num_classes:
        raise ValueError(f"{data} has {len(spec.labels)} classes but the model at {path} predicts {model.num_classes}")
    if model.labels and list(model.labels) != list(spec.labels):
        raise ValueError(f"the class names of {data} differ from the model's {model.labels[:5]}...")
    with torch.inference_mode(False):
        metrics = evaluate_split(model.to(target), spec, spec.val, batch_size=batch_size,
                                 workers=workers, tta=tta, progress=progress)  # fmt: skip
    metrics.update(model=str(path), split=spec.val.name, data=str(data), tta=tta)
    return metrics
