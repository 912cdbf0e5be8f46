"""Labelled images as arrays, for calibration and evaluation in a runtime (quantize, NetAdapt).

An image-folder tree or MNIST-style IDX files, read with the classification data's IDX reader.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .classification import find_idx, read_idx

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


@dataclass
class LabelledImages:
    """Preprocessed images (N, C, H, W float32) with integer labels in the model's label order."""

    images: np.ndarray
    labels: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.labels)


def _read_idx(path: Path) -> np.ndarray:
    return read_idx(path).numpy()  # one IDX reader, with its truncation and gzip checks


def _find_idx(root: Path, split: str, kind: str) -> Path | None:
    prefix = "train" if split == "train" else "t10k"
    return find_idx(root, f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte")


def idx_splits(root: Path) -> list[str]:
    """The IDX splits ("train", "test") whose images file ``root`` holds."""
    return [split for split in ("train", "test") if _find_idx(root, split, "images") is not None]


def is_idx_dir(root: Path) -> bool:
    return bool(idx_splits(root))


def _label_index(class_names: list[str], model_labels: list[str] | None, root: Path) -> list[int]:
    """Map the data's class names to the model's label indices (by name when the model has labels)."""
    if model_labels is None:
        return list(range(len(class_names)))
    lookup = {name: i for i, name in enumerate(model_labels)}
    missing = [name for name in class_names if name not in lookup]
    if missing:
        raise ValueError(f"{root}: class folder {missing[0]!r} is not one of the model's labels "
                         f"({', '.join(model_labels[:5])}...); rename the folders")  # fmt: skip
    return [lookup[name] for name in class_names]


def load_labelled_images(
    data: str | os.PathLike,
    preprocessing,
    *,
    split: str = "test",
    limit: int | None = None,
    offset: int = 0,
    model_labels: list[str] | None = None,
    seed: int = 0,
) -> LabelledImages:
    """Images from ``data`` prepared with ``preprocessing`` (a mobilenets Preprocessing).

    ``data`` is a directory of IDX files (``train-images-idx3-ubyte.gz``...; ``split`` picks
    train or t10k, which must be there) or an image-folder tree (``DATA/<class>/<image>``,
    shuffled with ``seed``; ``split`` is ignored). ``offset`` skips images, so that slices for
    calibration and evaluation of one pool do not overlap.
    """
    from PIL import Image

    from ..preprocessing import open_image

    root = Path(data)
    if not root.is_dir():
        raise FileNotFoundError(f"--data {root} is not a directory; give an image folder (DATA/<class>/<image>) "
                                "or a directory with MNIST-style IDX files")  # fmt: skip
    transform = preprocessing.transform()
    if is_idx_dir(root):
        # No fallback to the other split: the caller decides how one pool is sliced (see quantize_model).
        images_path = _find_idx(root, split, "images")
        if images_path is None:
            raise FileNotFoundError(f"--data {root} has no {split} split ({'train' if split == 'train' else 't10k'}"
                                    "-images-idx3-ubyte[.gz])")  # fmt: skip
        labels_path = images_path.with_name(images_path.name.replace("images-idx3", "labels-idx1"))
        if not labels_path.is_file():
            raise FileNotFoundError(f"{images_path} has no labels file beside it ({labels_path.name})")
        raw, labels = _read_idx(images_path), _read_idx(labels_path).astype(np.int64)
        stop = len(raw) if limit is None else min(len(raw), offset + limit)
        pil = [Image.fromarray(raw[i], mode="L") for i in range(offset, stop)]
        labels = labels[offset:stop]
        source = str(images_path)
    else:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        files = [(f, c) for c, name in enumerate(classes) for f in sorted((root / name).rglob("*"))
                 if f.suffix.lower() in IMAGE_SUFFIXES]  # fmt: skip
        if not files:
            raise ValueError(f"--data {root} holds no images: expected DATA/<class>/<image> "
                             f"({', '.join(sorted(IMAGE_SUFFIXES))}) or MNIST-style IDX files")  # fmt: skip
        index = _label_index(classes, model_labels, root)
        order = np.random.default_rng(seed).permutation(len(files))
        stop = len(files) if limit is None else min(len(files), offset + limit)
        chosen = [files[i] for i in order[offset:stop]]
        try:
            pil = [open_image(f) for f, _ in chosen]
        except OSError as err:
            raise ValueError(f"--data {root}: cannot read an image ({err})") from None
        labels = np.asarray([index[c] for _, c in chosen], dtype=np.int64)
        source = str(root)
    if not pil:
        raise ValueError(f"--data {root}: no images left after skipping {offset}; use fewer calibration images")
    try:
        images = np.stack([transform(img).numpy() for img in pil]).astype(np.float32)
    except ValueError as err:  # an image mode the preprocessing refuses (e.g. a float image outside [0, 1])
        raise ValueError(f"--data {root}: {err}") from None
    return LabelledImages(images, labels, source)
