"""Pictures of a dataset for its users: images with their boxes or colour masks, in grids with headers and a legend.

Everything is drawn to be read at a glance: small images (canvases of 32-128 px) are enlarged by a whole
factor first, box lines and label text grow with the image, and the colours are bright and distinct.
"""

from __future__ import annotations

import math

import torch

from .load import TaskData
from .transforms import IGNORE_INDEX

# Bright, mutually distinct colours (after Trubetskoy's "20 distinct colours", less the dark, grey and pale ones),
# so that no class looks like shadow or an unmasked image: class k (k >= 1) gets PALETTE[(k - 1) % len(PALETTE)].
PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (255, 128, 192), (170, 110, 40), (0, 230, 150),
    (150, 120, 255), (0, 160, 160),
]  # fmt: skip
IGNORED = (255, 255, 255)  # pixels a segmentation label leaves out
MIN_SIDE = 256  # smaller images are enlarged to at least this short side before anything is drawn on them


def colours(num_classes: int) -> list[tuple[int, int, int]]:
    """The colour of each class index; 0 (background) is never drawn."""
    return [(0, 0, 0)] + [PALETTE[(k - 1) % len(PALETTE)] for k in range(1, num_classes)]


def font(size: int):
    """PIL's default font at ``size`` px (Pillow >= 10.1 with FreeType), else its small bitmap font."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1 (no size), or built without FreeType
        return ImageFont.load_default()


def _uint8_rgb(image: torch.Tensor) -> torch.Tensor:
    if image.is_floating_point():
        image = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    return image.expand(3, -1, -1) if image.shape[0] == 1 else image[:3]


def _enlarge(image: torch.Tensor, target):
    """Small images grow by a whole factor (nearest neighbour: pixels stay sharp), boxes or mask with them."""
    factor = math.ceil(MIN_SIDE / max(1, min(image.shape[-2:])))
    if factor <= 1:
        return image, target
    image = image.repeat_interleave(factor, -2).repeat_interleave(factor, -1)
    if isinstance(target, dict):  # boxes
        return image, {**target, "boxes": target["boxes"].float() * factor}
    return image, target.repeat_interleave(factor, -2).repeat_interleave(factor, -1)


def _to_pil(picture: torch.Tensor):
    from PIL import Image

    return Image.fromarray(picture.permute(1, 2, 0).contiguous().numpy())


def _to_tensor(pil) -> torch.Tensor:
    from torchvision.transforms.functional import pil_to_tensor

    return pil_to_tensor(pil.convert("RGB"))


def _draw_boxes(image: torch.Tensor, target: dict, labels: list[str]) -> torch.Tensor:
    """Boxes ~1/150 of the short side wide, each labelled "name" or "name 0.87" on a patch of its colour."""
    from PIL import ImageDraw

    pil = _to_pil(image)
    draw = ImageDraw.Draw(pil)
    short = min(pil.size)
    width, text_font = max(2, round(short / 150)), font(max(12, round(short / 30)))
    palette = colours(len(labels))
    # x0 <= x1 and y0 <= y1, as PIL requires, even for a degenerate predicted box
    boxes = [[min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)] for x0, y0, x1, y1 in target["boxes"].tolist()]
    ids = target["labels"].tolist()
    scores = target.get("scores")
    scores = [None] * len(ids) if scores is None else scores.tolist()
    for box, k in zip(boxes, ids, strict=True):
        draw.rectangle(box, outline=palette[k], width=width)
    placed: list[tuple] = []
    for box, k, score in zip(boxes, ids, scores, strict=True):  # labels last: no box line crosses one
        text = labels[k] if score is None else f"{labels[k]} {score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=text_font)
        w, h = right - left + 2 * width, bottom - top + 2 * width
        x = min(max(0, box[0]), max(0, pil.size[0] - w))
        # above the box, else inside its top, else below it: the first place that hides no other label
        spots = [y for y in (box[1] - h, box[1], box[3]) if 0 <= y <= pil.size[1] - h] or [0]
        y = next((y for y in spots if not any(_overlap((x, y, x + w, y + h), r) for r in placed)), spots[0])
        placed.append((x, y, x + w, y + h))
        draw.rectangle([x, y, x + w, y + h], fill=palette[k])
        draw.text((x + width - left, y + width - top), text, fill=(0, 0, 0), font=text_font)
    return _to_tensor(pil)


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _present(mask: torch.Tensor, num_classes: int) -> list[int]:
    return [k for k in mask.unique().tolist() if 0 < k < num_classes or k == IGNORE_INDEX]


def legend_entries(masks, labels: list[str]) -> list[tuple[str, tuple[int, int, int]]]:
    """(name, colour) of each class present in any of ``masks`` (background left out), then "ignored"."""
    present = sorted({k for mask in masks for k in _present(mask, len(labels))})
    palette = colours(len(labels))
    return [("ignored", IGNORED) if k == IGNORE_INDEX else (labels[k], palette[k]) for k in present]


def legend(entries, width: int, size: int) -> torch.Tensor:
    """A white strip ``width`` px wide: a swatch and a name per entry, wrapped into as many rows as needed."""
    from PIL import Image, ImageDraw

    text_font, pad = font(size), max(4, size // 2)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    placed, x, row = [], pad, 0
    for name, colour in entries:
        item = size + pad // 2 + round(measure.textlength(name, font=text_font)) + 2 * pad
        if x + item > width and x > pad:
            x, row = pad, row + 1
        placed.append((x, row, name, colour))
        x += item
    line = round(size * 1.5)
    pil = Image.new("RGB", (width, (row + 1) * line + pad), "white")
    draw = ImageDraw.Draw(pil)
    for x, row, name, colour in placed:
        y = pad + row * line
        draw.rectangle([x, y, x + size, y + size], fill=colour, outline=(0, 0, 0))
        draw.text((x + size + pad // 2, y + size / 2), name, fill=(0, 0, 0), font=text_font, anchor="lm")
    return _to_tensor(pil)


def draw_sample(image: torch.Tensor, target, labels: list[str], *, with_legend: bool = True) -> torch.Tensor:
    """One sample as a uint8 3 x H x W picture, enlarged when small: for a dict target, boxes with their class
    names (and scores when it has "scores"); for a mask, its classes at 60% opacity (background undrawn, ignored
    pixels white) above a legend of the classes present (``with_legend``). The target says which."""
    from torchvision.utils import draw_segmentation_masks

    image, target = _enlarge(_uint8_rgb(image), target)
    if isinstance(target, dict):  # {"boxes", "labels"[, "scores"]}; else an (H, W) mask of class indices
        return _draw_boxes(image, target, labels)
    entries = legend_entries([target], labels)
    present = _present(target, len(labels))
    if present:
        masks = torch.stack([target == k for k in present])
        palette = colours(len(labels))
        cols = [IGNORED if k == IGNORE_INDEX else palette[k] for k in present]
        image = draw_segmentation_masks(image, masks, alpha=0.6, colors=cols)
    if not with_legend or not entries:
        return image
    strip = legend(entries, image.shape[-1], max(12, round(min(image.shape[-2:]) / 20)))
    return torch.cat([image, strip], dim=1)


def grid(pictures: list[torch.Tensor], *, nrow: int, headers=(), entries=()) -> torch.Tensor:
    """``pictures`` in rows of ``nrow`` (padded to one size), ``headers`` above the columns, a legend below."""
    from PIL import Image, ImageDraw
    from torchvision.utils import make_grid

    height = max(p.shape[1] for p in pictures)
    width = max(p.shape[2] for p in pictures)
    padded = [torch.nn.functional.pad(p, (0, width - p.shape[2], 0, height - p.shape[1]), value=255) for p in pictures]
    gap = 4
    body = make_grid(padded, nrow=nrow, padding=gap, pad_value=255)
    size = max(12, round(min(height, width) / 16))
    parts = []
    if headers:
        pil = Image.new("RGB", (body.shape[2], round(size * 1.8)), "white")
        draw = ImageDraw.Draw(pil)
        for column in range(min(nrow, len(pictures))):
            centre = gap + column * (width + gap) + width / 2
            text = headers[column % len(headers)]
            draw.text((centre, pil.size[1] / 2), text, fill=(0, 0, 0), font=font(size), anchor="mm")
        parts.append(_to_tensor(pil))
    parts.append(body)
    if entries:
        parts.append(legend(entries, body.shape[2], size))
    return torch.cat(parts, dim=1)


def draw_grid(data: TaskData, *, split: str = "val", count: int = 16, nrow: int = 4) -> torch.Tensor:
    """The first ``count`` samples of ``split`` (as the split's transform gives them) in a grid, one legend."""
    dataset = data.train if split == "train" else data.val
    pictures, targets = [], []
    for i in range(min(count, len(dataset))):
        sample = dataset[i]
        if sample is not None:
            pictures.append(draw_sample(sample[0], sample[1], data.labels, with_legend=False))
            targets.append(sample[1])
    if not pictures:
        raise ValueError(f"the {split} split of {data.name} has no readable samples to draw")
    masks = [t for t in targets if not isinstance(t, dict)]
    entries = legend_entries(masks, data.labels) if masks else ()
    return grid(pictures, nrow=nrow, entries=entries)


def save_png(picture: torch.Tensor, path) -> None:
    from PIL import Image

    from .. import io

    array = picture.permute(1, 2, 0).contiguous().numpy()
    io.atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))
