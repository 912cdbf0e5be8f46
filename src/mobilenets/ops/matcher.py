"""SSD matching (Liu et al. 2016, Sec 2.2): each anchor takes its best ground truth when IoU >= threshold,
and each ground truth takes its best anchor in any case (TF ``argmax_matcher`` with
``force_match_for_each_row``; torchvision ``SSDMatcher``).
"""

from __future__ import annotations

import torch
from torchvision.ops import box_iou

UNMATCHED = -1


def match(gt_boxes: torch.Tensor, anchors: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """(A,) index of the ground truth each anchor predicts, ``UNMATCHED`` (-1) for background."""
    if gt_boxes.numel() == 0:
        return torch.full((anchors.shape[0],), UNMATCHED, dtype=torch.int64, device=anchors.device)
    iou = box_iou(gt_boxes, anchors)  # (G, A)
    best_iou, matches = iou.max(dim=0)
    matches[best_iou < threshold] = UNMATCHED
    best_anchor = iou.argmax(dim=1)
    matches[best_anchor] = torch.arange(best_anchor.shape[0], dtype=torch.int64, device=anchors.device)
    return matches
