"""``load_detection_data`` / ``load_segmentation_data``: a name or a directory -> both splits, ready to train.

``fmnist-det`` / ``fmnist-seg`` (or a full canvas name, see ``CanvasSpec``) are generated from
Fashion-MNIST (nothing to download); a directory is a user's COCO (detection) or VOC-layout
(segmentation) dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch.utils.data import Dataset, Subset

from .canvas import DEFAULT_COUNTS, CanvasSpec, is_canvas_name
from .datasets import canvas_datasets, collate_detection, collate_segmentation
from .transforms import (
    DETECTION_RECIPES,
    SEGMENTATION_RECIPES,
    check_recipe,
    detection_transforms,
    segmentation_transforms,
)


def _fmnist_labels() -> list[str]:
    from .classification import FASHION_MNIST_LABELS

    return ["background", *FASHION_MNIST_LABELS]


@dataclass
class TaskData:
    """Both splits of a detection or segmentation dataset, and what a report must say about them."""

    task: str  # "detection" or "segmentation"
    name: str
    train: Dataset
    val: Dataset
    labels: list[str]  # index 0 = "background"
    resolution: int
    augment: str
    source: str
    # {split: {reason: count}}: what loading skipped, plus images that failed to decode in this process
    skipped: dict[str, dict[str, int]] = field(default_factory=dict)
    details: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def collate(self):
        return collate_detection if self.task == "detection" else collate_segmentation

    @property
    def skipped_total(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for counts in self.skipped.values():
            for reason, count in counts.items():
                total[reason] = total.get(reason, 0) + count
        return dict(sorted(total.items()))

    def to_dict(self) -> dict:
        return {
            "task": self.task, "name": self.name, "source": self.source, "labels": list(self.labels),
            "num_classes": self.num_classes, "resolution": self.resolution, "augment": self.augment,
            "train_size": len(self.train), "val_size": len(self.val),
            "skipped": {split: dict(sorted(c.items())) for split, c in self.skipped.items()}, **self.details,
        }  # fmt: skip


def _limit(dataset: Dataset, limit: int) -> Dataset:
    return Subset(dataset, range(min(limit, len(dataset)))) if limit else dataset


def _check_common(task: str, resolution: int | None, in_chans: int, train_limit: int, val_limit: int,
                  augment: str | None) -> None:  # fmt: skip
    """What can be checked before any file is read."""
    if augment is not None:
        known = DETECTION_RECIPES if task == "detection" else SEGMENTATION_RECIPES
        check_recipe(augment, known, task)
    if resolution is not None and resolution < 16:
        raise ValueError(f"--resolution {resolution} is too small for detection or segmentation; give >= 16")
    if in_chans not in (1, 3):
        raise ValueError(f"in_chans must be 1 or 3, got {in_chans}")
    if train_limit < 0 or val_limit < 0:
        raise ValueError(f"train/val limits must be >= 0 (0 = all), got {train_limit} and {val_limit}")


def _canvases(task: str, data: str, resolution, train_limit, val_limit, seed, augment, in_chans) -> TaskData:
    spec = CanvasSpec.parse(data).replace(seed=seed)
    wanted = {"detection": "det", "segmentation": "seg"}[task]
    if spec.task != wanted:
        raise ValueError(f"{data} is a {'detection' if spec.task == 'det' else 'segmentation'} dataset; "
                         f"for {task} give fmnist-{wanted}")  # fmt: skip
    size = resolution or spec.size
    build = detection_transforms if task == "detection" else segmentation_transforms
    augment = augment or "flip"  # heads.md §4.3 measured its figures with horizontal flips only
    labels = _fmnist_labels()
    counts = {"train": train_limit or DEFAULT_COUNTS["train"], "val": val_limit or DEFAULT_COUNTS["val"]}
    splits = {
        split: canvas_datasets(
            spec, split, counts[split], labels, build(size, train=split == "train", recipe=augment), in_chans
        )  # fmt: skip
        for split in ("train", "val")
    }
    details = {"canvas": spec.to_dict(), "items_from": {"train": "fashion-mnist train", "val": "fashion-mnist t10k"},
               **({"ignore_index": 255} if task == "segmentation" else {})}  # fmt: skip
    return TaskData(task, spec.name, splits["train"], splits["val"], labels, size, augment, "fashion-mnist canvases",
                    {"train": {}, "val": {}}, details)  # fmt: skip


def load_detection_data(
    data: str | Path = "fmnist-det",
    *,
    resolution: int | None = None,
    train_limit: int = 0,
    val_limit: int = 0,
    seed: int | None = None,
    augment: str | None = None,
    in_chans: int = 3,
) -> TaskData:
    """``fmnist-det`` canvases (``train_limit``/``val_limit`` canvases, default 10 000/1 000; ``seed``
    overrides the name's) or a COCO directory (limits cut each split, 0 = all; ``seed`` unused).
    ``resolution``: the square input size (default: the canvas size, 320 for COCO). ``augment``: one of
    ``transforms.DETECTION_RECIPES`` (default: flip for canvases, ssdlite for COCO)."""
    _check_common("detection", resolution, in_chans, train_limit, val_limit, augment)
    if is_canvas_name(str(data)):
        return _canvases("detection", str(data), resolution, train_limit, val_limit, seed, augment, in_chans)
    from .coco import CocoDetection, load_coco

    root = _directory(data, "detection", "fmnist-det, or a COCO directory with annotations/instances_train.json")
    splits, labels = load_coco(root)
    size, augment = resolution or 320, augment or "ssdlite"
    sets = {
        split: _limit(
            CocoDetection(s, labels, detection_transforms(size, train=split == "train", recipe=augment), in_chans),
            limit,
        )  # fmt: skip
        for (split, s), limit in zip(splits.items(), (train_limit, val_limit), strict=True)
    }
    details = {"clipped": {split: s.clipped for split, s in splits.items()},
               "annotations": {split: str(s.json_path) for split, s in splits.items()}}  # fmt: skip
    return TaskData("detection", root.name, sets["train"], sets["val"], labels, size, augment, str(root),
                    {split: s.skipped for split, s in splits.items()}, details)  # fmt: skip


def load_segmentation_data(
    data: str | Path = "fmnist-seg",
    *,
    resolution: int | None = None,
    train_limit: int = 0,
    val_limit: int = 0,
    seed: int | None = None,
    augment: str | None = None,
    in_chans: int = 3,
) -> TaskData:
    """``fmnist-seg`` canvases or a VOC-layout directory; targets are (H, W) int64 masks, 255 = ignore.
    ``augment``: one of ``transforms.SEGMENTATION_RECIPES`` (default: flip for canvases, scale for
    directories); ``resolution`` default: the canvas size, 512 for directories."""
    _check_common("segmentation", resolution, in_chans, train_limit, val_limit, augment)
    if is_canvas_name(str(data)):
        return _canvases("segmentation", str(data), resolution, train_limit, val_limit, seed, augment, in_chans)
    from .voc import VocSegmentation, load_voc

    root = _directory(data, "segmentation", "fmnist-seg, or a VOC-layout directory (ImageSets/Segmentation/)")
    splits, labels = load_voc(root)
    size, augment = resolution or 512, augment or "scale"
    sets = {
        split: _limit(VocSegmentation(s, labels, segmentation_transforms(size, train=split == "train",
                                                                         recipe=augment), in_chans), limit)
        for (split, s), limit in zip(splits.items(), (train_limit, val_limit), strict=True)
    }  # fmt: skip
    return TaskData("segmentation", root.name, sets["train"], sets["val"], labels, size, augment, str(root),
                    {split: s.skipped for split, s in splits.items()}, {"ignore_index": 255})  # fmt: skip


def _directory(data: str | Path, task: str, expected: str) -> Path:
    path = Path(data)
    if not path.is_dir():
        raise FileNotFoundError(f"--data {data}: no such directory and not a built-in {task} dataset; give {expected}")
    return path


def load_task_data(name: str, *, resolution: int | None = None, val_limit: int = 0) -> TaskData:
    """Canvases (``fmnist-det``, ``fmnist-seg``...), a COCO directory (``annotations/``) or a VOC-layout one,
    with the loader the data itself calls for (``data show``, ``info`` and ``export`` read any of them)."""
    from .canvas import CanvasSpec, is_canvas_name

    if is_canvas_name(name):
        boxes = CanvasSpec.parse(name).task == "det"
    else:
        root = Path(name)
        if not root.is_dir():
            raise FileNotFoundError(f"{name}: not a built-in dataset (fmnist-det, fmnist-seg) nor a directory")
        boxes = (root / "annotations").is_dir()
    load = load_detection_data if boxes else load_segmentation_data
    return load(name, resolution=resolution, val_limit=val_limit)
