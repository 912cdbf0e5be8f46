"""From fixed-shape model outputs to detections: score threshold, per-class top-k, batched NMS, top-k.

Equal to torchvision's ``SSD.postprocess_detections`` for the same decoded boxes and scores; the
per-class loop is one ``topk`` over anchors (the top-k of the scores above the threshold are the
scores above the threshold among the top-k).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torchvision.ops import batched_nms, nms


@dataclass(frozen=True)
class PostprocessConfig:
    score_thresh: float = 0.001
    nms_thresh: float = 0.55
    topk_candidates: int = 300  # per class, before NMS
    detections_per_img: int = 300

    def __post_init__(self):
        if not 0 <= self.score_thresh < 1:
            raise ValueError(f"score_thresh must be in [0, 1), got {self.score_thresh}")
        if not 0 < self.nms_thresh <= 1:
            raise ValueError(f"nms_thresh must be in (0, 1], got {self.nms_thresh}")
        if self.topk_candidates < 1 or self.detections_per_img < 1:
            raise ValueError(f"topk_candidates and detections_per_img must be >= 1, got {self.topk_candidates} "
                             f"and {self.detections_per_img}")  # fmt: skip


def postprocess(boxes: torch.Tensor, scores: torch.Tensor, config: PostprocessConfig) -> list[dict[str, torch.Tensor]]:
    """Per image {"boxes" (n, 4) xyxy pixels, "scores" (n,), "labels" (n,) int64 in 1..C-1}, best first.

    ``boxes`` (N, A, 4) and ``scores`` (N, A, C) are the model's outputs; column 0 of ``scores``
    (the background) is never a detection.
    """
    detections = []
    for image_boxes, image_scores in zip(boxes, scores, strict=True):
        foreground = image_scores[:, 1:]  # (A, C - 1)
        k = min(config.topk_candidates, foreground.shape[0])
        top_scores, top_anchors = foreground.topk(k, dim=0)  # (k, C - 1), best first in each class
        labels = torch.arange(1, foreground.shape[1] + 1, device=boxes.device).expand(k, -1)
        keep = top_scores > config.score_thresh
        # Class-major order, as torchvision concatenates its per-class candidates.
        cand_scores, cand_anchors, cand_labels = (t.t()[keep.t()] for t in (top_scores, top_anchors, labels))
        cand_boxes = image_boxes[cand_anchors]
        kept = batched_nms(cand_boxes, cand_scores, cand_labels, config.nms_thresh)[: config.detections_per_img]
        detections.append({"boxes": cand_boxes[kept], "scores": cand_scores[kept], "labels": cand_labels[kept]})
    return detections


class FinalDetections(NamedTuple):
    """Fixed-shape detections, the layout of the TF Object Detection API's exported graphs."""

    boxes: torch.Tensor  # (N, D, 4) x1, y1, x2, y2 pixels; zeros past num_detections
    scores: torch.Tensor  # (N, D) best first; 0 past num_detections
    labels: torch.Tensor  # (N, D) int64 in 1..C-1; 0 past num_detections
    num_detections: torch.Tensor  # (N,) int64


def padded_postprocess(boxes: torch.Tensor, scores: torch.Tensor, config: PostprocessConfig) -> FinalDetections:
    """``postprocess`` with outputs padded to ``config.detections_per_img``, in a form that exports.

    One ``nms`` per class on that class's top-k candidates above the threshold (what ``batched_nms``
    does past 4 000 boxes), which ONNX exports as ``NonMaxSuppression``; one NMS over all classes with
    offset boxes would compare every pair of candidates, classes apart or not. The padding keeps the
    output shapes static, so a batch of any size is one tensor per output.
    """
    keep_top = config.detections_per_img
    out: list[list[torch.Tensor]] = [[], [], [], []]
    for image_boxes, image_scores in zip(boxes, scores, strict=True):
        foreground = image_scores[:, 1:]
        k = min(config.topk_candidates, foreground.shape[0])
        top_scores, top_anchors = foreground.topk(k, dim=0)  # (k, C - 1)
        kept_boxes, kept_scores, kept_labels = [], [], []
        for c in range(foreground.shape[1]):
            above = top_scores[:, c] > config.score_thresh
            class_scores, class_boxes = top_scores[:, c][above], image_boxes[top_anchors[:, c][above]]
            kept = nms(class_boxes, class_scores, config.nms_thresh)
            kept_boxes.append(class_boxes[kept])
            kept_scores.append(class_scores[kept])
            kept_labels.append(torch.full_like(kept, c + 1))
        cand_scores, order = torch.cat(kept_scores).sort(descending=True)
        order = order[:keep_top]
        found = torch.ones_like(order)
        for i, (values, width) in enumerate(((torch.cat(kept_boxes)[order], 4), (cand_scores[:keep_top], 0),
                                             (torch.cat(kept_labels)[order], 0), (found, 0))):  # fmt: skip
            pad = values.new_zeros((keep_top, width) if width else (keep_top,))
            out[i].append(torch.cat([values, pad])[:keep_top])
    boxes_, scores_, labels_, found_ = (torch.stack(parts) for parts in out)
    return FinalDetections(boxes_, scores_, labels_, found_.sum(dim=1))
