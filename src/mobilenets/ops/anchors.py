"""SSD default boxes (Liu et al. 2016, Sec 2.2), in the two layouts SSDLite is published with.

``tf``: TF Object Detection API ``ssd_anchor_generator`` (the P-V2/P-V3 configs): scales linear
from ``min_scale`` to ``max_scale``, ratios 1, 2, 1/2, 3, 1/3 and one box of the interpolated
scale sqrt(s_k s_k+1); the lowest layer has 3 boxes, (0.1, 1), (s_0, 2), (s_0, 1/2)
(``reduce_boxes_in_lowest_layer``). ``torchvision``: ``DefaultBoxGenerator([[2, 3]] * 6, 0.2, 0.95)``:
(s, s), (s', s'), then each ratio both ways, 6 boxes everywhere, sizes clipped to [0, 1].
Boxes are ordered location-major (row, column, box), as the heads' outputs are flattened.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

ANCHOR_STYLES = ("tf", "torchvision")


@dataclass(frozen=True)
class AnchorConfig:
    """Default-box rule: scales ``min_scale``..``max_scale`` over the levels, ``aspect_ratios`` above 1."""

    style: str = "tf"
    min_scale: float = 0.2
    max_scale: float = 0.95
    aspect_ratios: tuple[float, ...] = (2.0, 3.0)  # each taken as r and 1/r
    lowest_scale: float = 0.1  # tf: the ratio-1 box of the lowest layer

    def __post_init__(self):
        if self.style not in ANCHOR_STYLES:
            raise ValueError(f"anchor style must be one of {ANCHOR_STYLES}, got {self.style!r}")
        if not 0 < self.min_scale < self.max_scale <= 1:
            raise ValueError(f"anchor scales need 0 < min_scale < max_scale <= 1, got {self.min_scale}, "
                             f"{self.max_scale}")  # fmt: skip

    def scales(self, levels: int) -> list[float]:
        """s_k for each level, plus 1.0 for the interpolated scale of the last level."""
        if levels == 1:
            return [self.min_scale, self.max_scale]
        step = (self.max_scale - self.min_scale) / (levels - 1.0)
        return [self.min_scale + step * k for k in range(levels)] + [1.0]

    def box_shapes(self, levels: int) -> list[list[tuple[float, float]]]:
        """(width, height) of each box at each level, relative to the image."""
        scales = self.scales(levels)
        shapes = []
        for k in range(levels):
            s, s_next = scales[k], scales[k + 1]
            if self.style == "torchvision":
                pairs = [(s, s), (math.sqrt(s * s_next),) * 2]
                for ratio in self.aspect_ratios:
                    root = math.sqrt(ratio)
                    pairs += [(s * root, s / root), (s / root, s * root)]
                pairs = [(min(max(w, 0.0), 1.0), min(max(h, 0.0), 1.0)) for w, h in pairs]  # clip=True
            elif k == 0:  # tf, reduce_boxes_in_lowest_layer
                root = math.sqrt(2.0)
                pairs = [(self.lowest_scale, self.lowest_scale), (s * root, s / root), (s / root, s * root)]
            else:  # tf: ratios 1, r, 1/r for each r, then the interpolated scale
                pairs = [(s, s)]
                for ratio in self.aspect_ratios:
                    root = math.sqrt(ratio)
                    pairs += [(s * root, s / root), (s / root, s * root)]
                pairs.append((math.sqrt(s * s_next),) * 2)
            shapes.append(pairs)
        return shapes

    def num_anchors(self, levels: int) -> list[int]:
        return [len(p) for p in self.box_shapes(levels)]


def default_boxes(
    config: AnchorConfig, grid_sizes: list[tuple[int, int]], image_size: tuple[int, int], dtype=torch.float32
) -> torch.Tensor:
    """All default boxes as (A, 4) x1, y1, x2, y2 in pixels of an ``image_size`` (H, W) image.

    Box centers sit at ((j + 0.5) / W_k, (i + 0.5) / H_k) of each level's grid. The arithmetic
    follows torchvision's ``DefaultBoxGenerator`` step by step so both give the same floats.
    """
    boxes = []
    for (rows, cols), pairs in zip(grid_sizes, config.box_shapes(len(grid_sizes)), strict=True):
        shifts_x = ((torch.arange(0, cols) + 0.5) / cols).to(dtype=dtype)
        shifts_y = ((torch.arange(0, rows) + 0.5) / rows).to(dtype=dtype)
        shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
        centers = torch.stack((shift_x.reshape(-1), shift_y.reshape(-1)) * len(pairs), dim=-1).reshape(-1, 2)
        sizes = torch.as_tensor(pairs, dtype=dtype).repeat(rows * cols, 1)
        boxes.append(torch.cat((centers, sizes), dim=1))
    boxes = torch.cat(boxes, dim=0)
    height, width = image_size
    low, high = boxes[:, :2] - 0.5 * boxes[:, 2:], boxes[:, :2] + 0.5 * boxes[:, 2:]
    return torch.stack((low[:, 0] * width, low[:, 1] * height, high[:, 0] * width, high[:, 1] * height), dim=-1)
