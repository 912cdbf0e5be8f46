"""Pictures of a dataset for its users: a grid of images with their boxes or colour masks."""

from __future__ import annotations

import torch

from .load import TaskData
from .transforms import IGNORE_INDEX
from .voc import voc_palette


def colours(num_classes: int) -> list[tuple[int, int, int]]:
    """VOC's colour for each class index (0 = background, unused)."""
    palette = voc_palette()
    return [tuple(palette[3 * k : 3 * k + 3]) for k in range(num_classes)]


def _uint8_rgb(image: torch.Tensor) -> torch.Tensor:
    if image.is_floating_point():
        image = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    return image.expand(3, -1, -1) if image.shape[0] == 1 else image[:3]


def draw_sample(image: torch.Tensor, target, labels: list[str], task: str) -> torch.Tensor:
    """One sample as a uint8 3 x H x W picture: boxes with class names, or masks at half opacity (ignore white)."""
    from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

    image = _uint8_rgb(image)
    palette = colours(len(labels))
    if task == "detection":
        names = [labels[k] for k in target["labels"].tolist()]
        cols = [palette[k] for k in target["labels"].tolist()]
        return draw_bounding_boxes(image, target["boxes"], labels=names, colors=cols, width=1)
    present = [k for k in target.unique().tolist() if 0 < k < len(labels) or k == IGNORE_INDEX]
    if not present:
        return image
    masks = torch.stack([target == k for k in present])
    cols = [(255, 255, 255) if k == IGNORE_INDEX else palette[k] for k in present]
    return draw_segmentation_masks(image, masks, alpha=0.5, colors=cols)


def draw_grid(data: TaskData, *, split: str = "val", count: int = 16, nrow: int = 4) -> torch.Tensor:
    """The first ``count`` samples of ``split`` (as the split's transform gives them) in a grid."""
    from torchvision.utils import make_grid

    dataset = data.train if split == "train" else data.val
    pictures = []
    for i in range(min(count, len(dataset))):
        sample = dataset[i]
        if sample is not None:
            pictures.append(draw_sample(sample[0], sample[1], data.labels, data.task))
    if not pictures:
        raise ValueError(f"the {split} split of {data.name} has no readable samples to draw")
    return make_grid(pictures, nrow=nrow, padding=2, pad_value=255)


def save_png(picture: torch.Tensor, path) -> None:
    from PIL import Image

    from .. import io

    array = picture.permute(1, 2, 0).contiguous().numpy()
    io.atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))
