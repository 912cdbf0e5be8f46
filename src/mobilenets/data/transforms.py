"""Augmentation for detection and segmentation with ``torchvision.transforms.v2`` and ``tv_tensors``.

Detection recipes follow torchvision's detection references (``references/detection/presets.py``):
``ssdlite`` = IoU crop + horizontal flip (the SSDLite recipe), ``ssd`` = zoom out + IoU crop + flip,
``flip`` = flip only, ``none``. Segmentation (``references/segmentation/presets.py``): ``scale`` =
random scale 0.5-2x, crop back to size (padding the mask with 255 = ignore) + flip, ``flip``, ``none``.
Every recipe ends at a fixed ``size`` x ``size`` float image in [0, 1] (SSD and our heads take a
fixed input; normalization is the model's).
"""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2 as T

DETECTION_RECIPES = ("ssdlite", "ssd", "flip", "none")
SEGMENTATION_RECIPES = ("scale", "flip", "none")
IGNORE_INDEX = 255


def check_recipe(recipe: str, known: tuple[str, ...], task: str) -> None:
    if recipe not in known:
        raise ValueError(f"unknown {task} augmentation {recipe!r}; choose one of {', '.join(known)}")


def detection_transforms(size: int, *, train: bool, recipe: str = "ssdlite") -> T.Compose:
    """(image, {"boxes": BoundingBoxes, "labels"}) -> the same at ``size`` x ``size``, float image."""
    check_recipe(recipe, DETECTION_RECIPES, "detection")
    steps: list = []
    crop = train and recipe in ("ssdlite", "ssd")
    if train and recipe == "ssd":
        steps.append(T.RandomZoomOut(fill={tv_tensors.Image: 0, "others": 0}, side_range=(1.0, 4.0)))
    if crop:
        steps.append(T.RandomIoUCrop())
    steps.append(T.Resize((size, size), antialias=True))
    if train and recipe != "none":
        steps.append(T.RandomHorizontalFlip())
    steps.append(T.ToDtype(torch.float32, scale=True))
    if crop:  # a crop or a zoom can leave boxes under a pixel: drop them with their labels
        steps.append(T.SanitizeBoundingBoxes(min_size=1))
    return T.Compose(steps)


def segmentation_transforms(size: int, *, train: bool, recipe: str = "scale") -> T.Compose:
    """(image, Mask) -> the same at ``size`` x ``size`` (mask nearest-resized), float image."""
    check_recipe(recipe, SEGMENTATION_RECIPES, "segmentation")
    steps: list = [T.Resize((size, size), antialias=True)]
    if train and recipe == "scale":
        steps += [
            T.RandomResize(max(1, size // 2), 2 * size + 1),
            T.RandomCrop(size, pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}),
        ]
    if train and recipe != "none":
        steps.append(T.RandomHorizontalFlip())
    steps.append(T.ToDtype(torch.float32, scale=True))
    return T.Compose(steps)
