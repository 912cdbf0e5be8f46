"""Detection and segmentation datasets: one sample contract for canvases, COCO and VOC data.

A detection sample is ``(image, {"boxes": (n, 4) float xyxy pixels, "labels": (n,) int64})``, a
segmentation sample ``(image, mask)`` with mask (H, W) int64, 255 = ignore; the image is C x H x W,
float in [0, 1] after the split's transform (uint8 without one). Label 0 is the background.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from .canvas import Canvas, CanvasGenerator, CanvasSpec

log = logging.getLogger(__name__)

Transform = Callable | None


def _tensor(x: torch.Tensor) -> torch.Tensor:
    return x.as_subclass(torch.Tensor)


def _channels(image: torch.Tensor, in_chans: int) -> torch.Tensor:
    if image.shape[0] == 1 and in_chans == 3:
        return image.expand(3, -1, -1)
    return image


class DetectionDataset(Dataset):
    """Base: ``sample(i)`` gives (tv_tensors.Image uint8, {"boxes": BoundingBoxes, "labels"}) or None
    (an image that cannot be decoded; ``collate_detection`` drops it)."""

    task = "detection"

    def __init__(self, labels: list[str], transform: Transform = None, in_chans: int = 3):
        self.labels, self.transform, self.in_chans = labels, transform, in_chans
        self.skipped: Counter = Counter()

    def sample(self, index: int):
        raise NotImplementedError

    def __getitem__(self, index: int):
        sample = self.sample(index)
        if sample is None:
            return None
        image, target = self.transform(*sample) if self.transform is not None else sample
        boxes = _tensor(target["boxes"]).float().reshape(-1, 4)
        return _channels(_tensor(image), self.in_chans), {"boxes": boxes, "labels": target["labels"]}


class SegmentationDataset(Dataset):
    """Base: ``sample(i)`` gives (tv_tensors.Image uint8, tv_tensors.Mask (H, W) uint8) or None."""

    task = "segmentation"

    def __init__(self, labels: list[str], transform: Transform = None, in_chans: int = 3):
        self.labels, self.transform, self.in_chans = labels, transform, in_chans
        self.skipped: Counter = Counter()

    def sample(self, index: int):
        raise NotImplementedError

    def __getitem__(self, index: int):
        sample = self.sample(index)
        if sample is None:
            return None
        image, mask = self.transform(*sample) if self.transform is not None else sample
        return _channels(_tensor(image), self.in_chans), _tensor(mask).long()


def collate_detection(batch: list) -> tuple[torch.Tensor, list[dict]]:
    """Images stacked (B, C, H, W), targets as a list; undecodable samples (None) dropped."""
    good = [b for b in batch if b is not None]
    if not good:
        return torch.empty(0), []
    return torch.stack([b[0] for b in good]), [b[1] for b in good]


def collate_segmentation(batch: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (B, C, H, W) and masks (B, H, W) stacked; undecodable samples (None) dropped."""
    good = [b for b in batch if b is not None]
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long)
    return torch.stack([b[0] for b in good]), torch.stack([b[1] for b in good])


# --- Fashion-MNIST canvases ------------------------------------------------------------


def _canvas_image(canvas: Canvas) -> tv_tensors.Image:
    return tv_tensors.Image(torch.from_numpy(canvas.image)[None])


class CanvasDetection(DetectionDataset):
    """``count`` canvases of one split as detection samples (boxes, labels = class + 1)."""

    def __init__(self, generator: CanvasGenerator, count: int, labels: list[str], transform: Transform = None,
                 in_chans: int = 3):  # fmt: skip
        super().__init__(labels, transform, in_chans)
        self.generator, self.count = generator, count

    def __len__(self) -> int:
        return self.count

    def canvas(self, index: int) -> Canvas:
        if not 0 <= index < self.count:
            raise IndexError(f"canvas {index} out of range for {self.count} canvases")
        return self.generator(index)

    def sample(self, index: int):
        c = self.canvas(index)
        size = (c.image.shape[0], c.image.shape[1])
        boxes = tv_tensors.BoundingBoxes(torch.from_numpy(c.boxes), format="XYXY", canvas_size=size)
        return _canvas_image(c), {"boxes": boxes, "labels": torch.from_numpy(c.labels)}


class CanvasSegmentation(SegmentationDataset):
    """``count`` canvases of one split as segmentation samples (mask = class + 1, 0 = background)."""

    def __init__(self, generator: CanvasGenerator, count: int, labels: list[str], transform: Transform = None,
                 in_chans: int = 3):  # fmt: skip
        super().__init__(labels, transform, in_chans)
        self.generator, self.count = generator, count

    def __len__(self) -> int:
        return self.count

    def canvas(self, index: int) -> Canvas:
        if not 0 <= index < self.count:
            raise IndexError(f"canvas {index} out of range for {self.count} canvases")
        return self.generator(index)

    def sample(self, index: int):
        c = self.canvas(index)
        return _canvas_image(c), tv_tensors.Mask(torch.from_numpy(c.mask))


def canvas_datasets(spec: CanvasSpec, split: str, count: int, labels: list[str], transform: Transform,
                    in_chans: int, directory=None) -> Dataset:  # fmt: skip
    generator = CanvasGenerator(spec, split, directory)
    cls = CanvasDetection if spec.task == "det" else CanvasSegmentation
    return cls(generator, count, labels, transform, in_chans)
