"""Fashion-MNIST canvases for detection and segmentation (FMNIST-Det / FMNIST-Seg, heads.md §4.2).

A canvas is ``size`` x ``size`` uint8 with N(0, ``noise_std``) background noise and 1-4
Fashion-MNIST items, each bilinearly resized to a random square side in [``min_scale``,
``max_scale``] and placed uniformly, its position redrawn while its box overlaps a placed
item's box by IoU > ``max_iou``. One generator gives the image, the tight boxes (pixels >
``threshold`` of the resized item), the labels (class + 1) and the mask (class + 1 where the
item's pixel > ``threshold``, later items on top, 0 = background). Canvas ``i`` of a split
depends only on (version, seed, split, i): DataLoader workers, resume and export agree exactly.
Training canvases take items from Fashion-MNIST's train split, validation canvases from t10k.
"""

from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

VERSION = "fmnist-canvas-v1"
_VERSION_KEY = 20261201  # part of every canvas's seed: a new version draws new canvases
ATTEMPTS = 20  # positions tried per item before it is left out (part of VERSION)
TASKS = {"det": "detection", "seg": "segmentation"}
SPLITS = ("train", "val")
DEFAULT_COUNTS = {"train": 10000, "val": 1000}  # heads.md §4.4
_SPLIT_KEY = {"train": 0, "val": 1}
_SOURCE_SPLIT = {"train": "train", "val": "test"}  # keys of data.classification.load_idx_dir

_NAME = re.compile(
    r"fmnist-(?P<task>det|seg)(?:-(?P<size>\d+))?(?:-n(?P<min_items>\d+)to(?P<max_items>\d+))?"
    r"(?:-s(?P<min_scale>\d+)to(?P<max_scale>\d+))?(?:-iou(?P<max_iou>[\d.]+))?(?:-noise(?P<noise_std>[\d.]+))?"
    r"(?:-t(?P<threshold>\d+))?(?:-seed(?P<seed>\d+))?"
)


def _num(value: float) -> str:
    return f"{value:g}"


@dataclass(frozen=True)
class CanvasSpec:
    """The generator's parameters; ``name`` spells them all (defaults of iou/noise/threshold left out)."""

    task: str = "det"  # "det" or "seg": the same canvases, boxes or masks
    size: int = 128
    min_items: int = 1
    max_items: int = 4
    min_scale: int = 24
    max_scale: int = 64
    max_iou: float = 0.15
    noise_std: float = 8.0
    threshold: int = 30
    seed: int = 1
    version: str = field(default=VERSION, init=False)

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"canvas task must be 'det' or 'seg', got {self.task!r}")
        if self.size < 16:
            raise ValueError(f"canvas size must be >= 16, got {self.size}")
        if not 1 <= self.min_items <= self.max_items <= 64:
            raise ValueError(f"item counts must satisfy 1 <= min <= max <= 64, got {self.min_items}to{self.max_items}")
        if not 4 <= self.min_scale <= self.max_scale <= self.size:
            raise ValueError(f"item sizes must satisfy 4 <= min <= max <= canvas size {self.size}, "
                             f"got {self.min_scale}to{self.max_scale}")  # fmt: skip
        if not 0 <= self.max_iou <= 1:
            raise ValueError(f"max_iou must be in [0, 1], got {self.max_iou}")
        if self.noise_std < 0 or not 0 <= self.threshold < 255 or self.seed < 0:
            raise ValueError(f"noise_std must be >= 0, threshold in [0, 255) and seed >= 0, got "
                             f"{self.noise_std}, {self.threshold}, {self.seed}")  # fmt: skip

    @property
    def name(self) -> str:
        default = CanvasSpec()
        parts = [f"fmnist-{self.task}", str(self.size), f"n{self.min_items}to{self.max_items}",
                 f"s{self.min_scale}to{self.max_scale}"]  # fmt: skip
        if self.max_iou != default.max_iou:
            parts.append(f"iou{_num(self.max_iou)}")
        if self.noise_std != default.noise_std:
            parts.append(f"noise{_num(self.noise_std)}")
        if self.threshold != default.threshold:
            parts.append(f"t{self.threshold}")
        parts.append(f"seed{self.seed}")
        return "-".join(parts)

    @property
    def num_classes(self) -> int:
        return 11  # background + the 10 Fashion-MNIST classes

    def to_dict(self) -> dict:
        return {"name": self.name, **asdict(self)}

    def replace(self, **changes) -> CanvasSpec:
        fields = {k: v for k, v in asdict(self).items() if k != "version"}
        fields.update({k: v for k, v in changes.items() if v is not None})
        return CanvasSpec(**fields)

    @classmethod
    def parse(cls, name: str) -> CanvasSpec:
        """``fmnist-det``, ``fmnist-seg`` or a full name such as ``fmnist-det-128-n1to4-s24to64-seed1``."""
        match = _NAME.fullmatch(name.strip().lower())
        if match is None:
            raise ValueError(f"{name!r} is not a canvas dataset name; give fmnist-det, fmnist-seg or a full name "
                             "such as fmnist-det-128-n1to4-s24to64-seed1")  # fmt: skip
        values = {k: v for k, v in match.groupdict().items() if v is not None}
        types = {f: type(getattr(cls(), f)) for f in values}
        return cls(**{k: types[k](v) for k, v in values.items()})


def is_canvas_name(data: str | Path) -> bool:
    return isinstance(data, str) and _NAME.fullmatch(data.strip().lower()) is not None


@dataclass
class Canvas:
    """One generated canvas. ``boxes`` xyxy in pixel edges (x2 = last column + 1), ``labels`` class + 1;
    ``items`` the indices of the items in the source split; ``footprints`` (x0, y0, pixels > threshold) of
    each item's resized square, before later items cover it."""

    image: np.ndarray  # (size, size) uint8
    mask: np.ndarray  # (size, size) uint8, 0 = background
    boxes: np.ndarray  # (n, 4) float32
    labels: np.ndarray  # (n,) int64 in 1..10
    items: np.ndarray  # (n,) int64
    footprints: list[tuple[int, int, np.ndarray]]


@functools.lru_cache(maxsize=2)
def _load_pool(directory: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from .classification import FASHION_MNIST_DIR, INSTALL_HINT, load_idx_dir

    if not Path(directory).is_dir():
        hint = INSTALL_HINT if Path(directory) == FASHION_MNIST_DIR else "give the directory with the four IDX files"
        raise FileNotFoundError(f"the canvases need Fashion-MNIST, but {directory} is missing; {hint}")
    return {k: (images.numpy(), labels.numpy()) for k, (images, labels) in load_idx_dir(directory).items()}


@functools.lru_cache(maxsize=4)
def _noise_bank(std: float) -> np.ndarray:
    """1 Mi background pixels, N(0, std) rounded and clipped to [0, 255]; a canvas copies a random stretch.

    Drawing 16 Ki normals per canvas was two thirds of the generator's time; a fixed bank (a function
    of the version and std only) makes the background a cheap copy and keeps canvases reproducible.
    """
    rng = np.random.default_rng([_VERSION_KEY, round(std * 1000)])
    return np.clip(np.rint(rng.normal(0.0, std, 1 << 20)), 0, 255).astype(np.uint8)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(1)
    area = (box[2:] - box[:2]).prod()
    areas = (boxes[:, 2:] - boxes[:, :2]).prod(1)
    return inter / (area + areas - inter)


class CanvasGenerator:
    """``generator(i)`` -> the i-th :class:`Canvas` of ``split`` ("train" or "val") for ``spec``."""

    def __init__(self, spec: CanvasSpec, split: str, directory: str | Path | None = None):
        from .classification import FASHION_MNIST_DIR

        if split not in SPLITS:
            raise ValueError(f"canvas split must be one of {SPLITS}, got {split!r}")
        self.spec, self.split = spec, split
        self.directory = str(directory or FASHION_MNIST_DIR)
        self._pool: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def pool(self) -> tuple[np.ndarray, np.ndarray]:
        if self._pool is None:
            self._pool = _load_pool(self.directory)[_SOURCE_SPLIT[self.split]]
        return self._pool

    def __getstate__(self):  # DataLoader workers reload (fork shares the cache; spawn reads the files once)
        return {**self.__dict__, "_pool": None}

    def __call__(self, index: int) -> Canvas:
        if index < 0:
            raise IndexError(f"canvas index must be >= 0, got {index}")
        spec = self.spec
        images, classes = self.pool
        rng = np.random.default_rng([_VERSION_KEY, spec.seed, _SPLIT_KEY[self.split], index])
        size = spec.size
        bank = _noise_bank(spec.noise_std)
        start = int(rng.integers(0, len(bank) - size * size + 1))
        image = bank[start : start + size * size].reshape(size, size).copy()
        mask = np.zeros((size, size), np.uint8)
        boxes, labels, items, footprints = [], [], [], []
        for _ in range(int(rng.integers(spec.min_items, spec.max_items + 1))):
            item = int(rng.integers(len(images)))
            side = int(rng.integers(spec.min_scale, spec.max_scale + 1))
            pixels = _resize(images[item], side)
            fg = pixels > spec.threshold
            rows, cols = np.flatnonzero(fg.any(1)), np.flatnonzero(fg.any(0))
            if rows.size == 0:  # nothing above the threshold: no box to give (no Fashion-MNIST item is so dark)
                continue
            inner = np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float32)
            for _ in range(ATTEMPTS):
                x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, 2))
                box = inner + np.array([x0, y0, x0, y0], np.float32)
                if not boxes or _iou(box, np.stack(boxes)).max() <= spec.max_iou:
                    break
            else:
                continue  # no room for it on this canvas
            region = image[y0 : y0 + side, x0 : x0 + side]
            # Above the threshold the item covers what is below (as in the mask); its faint rim blends by max.
            region[...] = np.where(fg, pixels, np.maximum(region, pixels))
            mask[y0 : y0 + side, x0 : x0 + side][fg] = classes[item] + 1
            boxes.append(box)
            labels.append(int(classes[item]) + 1)
            items.append(item)
            footprints.append((x0, y0, fg))
        return Canvas(
            image=image,
            mask=mask,
            boxes=np.stack(boxes) if boxes else np.zeros((0, 4), np.float32),
            labels=np.array(labels, np.int64),
            items=np.array(items, np.int64),
            footprints=footprints,
        )


def _resize(item: np.ndarray, side: int) -> np.ndarray:
    x = torch.from_numpy(item).float()[None, None]
    x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
    # Rounded in numpy: torch's elementwise ops on a tiny tensor pay a thread-pool wake-up each (~1 ms).
    return np.clip(np.rint(x[0, 0].numpy()), 0, 255).astype(np.uint8)
