"""Evaluate a run directory (its best model) or a model directory on a dataset split."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import UsageError


def evaluate(
    path: str | Path,
    data: str | None = None,
    *,
    batch_size: int = 256,
    limit: int = 0,
    workers: int = 2,
    tta: bool = False,
) -> dict:
    """Top-1/top-5 (percent), loss and confusion matrix of a trained model on ``data``'s val/test split.

    ``data`` None: the data of the run (``RUN_DIR/run.json``, also for ``RUN_DIR/best``); a bare
    model directory knows no data, so it needs ``data``. Resolution and channels come from the
    model's preprocessing. ``tta``: average the logits of each image and its horizontal mirror.
    """
    from ..io import CONFIG_FILE, load_model
    from .data import load_data
    from .engine import BEST_DIR, evaluate_split

    path = Path(path)
    if (path / BEST_DIR / CONFIG_FILE).is_file():
        path = path / BEST_DIR
    elif not (path / CONFIG_FILE).is_file():
        raise FileNotFoundError(
            f"{path} is neither a run directory (with {BEST_DIR}/) nor a model directory (with {CONFIG_FILE})"
        )
    data, data_from = (data, "--data") if data is not None else (run_data(path), "run.json")
    model = load_model(path)
    spec = load_data(data, preprocessing=model.preprocessing, in_chans=model.in_chans, val_limit=limit, train_limit=1)
    if len(spec.labels) != model.num_classes:
        raise ValueError(f"{data} has {len(spec.labels)} classes but the model at {path} predicts {model.num_classes}")
    if model.labels and list(model.labels) != list(spec.labels):
        raise ValueError(f"the class names of {data} differ from the model's {model.labels[:5]}...")
    with torch.inference_mode(False):
        metrics = evaluate_split(model, spec, spec.val, batch_size=batch_size, workers=workers, tta=tta)
    metrics.update(model=str(path), split=spec.val.name, data=str(data), data_from=data_from, tta=tta)
    return metrics


def run_data(model_dir: Path) -> str:
    """The data a run's model was trained on, from the run's run.json (``model_dir`` is the run's best/)."""
    from .data import BUILTIN
    from .engine import BEST_DIR, RUN_CONFIG, read_run_config

    run_dir = model_dir.parent
    if model_dir.name != BEST_DIR or not (run_dir / RUN_CONFIG).is_file():
        # Evaluating on a default dataset would give a meaningless figure (an RGB ImageNet model on Fashion-MNIST).
        raise UsageError(f"{model_dir} is a model directory, not a run: it does not say what data it was trained on; "
                         "pass --data (fashion-mnist, a directory of IDX files or an ImageFolder root)")  # fmt: skip
    data = read_run_config(run_dir).data
    if str(data).lower() not in BUILTIN and not Path(data).is_dir():
        raise FileNotFoundError(f"{run_dir / RUN_CONFIG} says the run trained on {data}, which is not a directory "
                                "from here; pass --data with where that data is now")  # fmt: skip
    return str(data)
