"""SSD training losses: the three recipes SSDLite is published with (heads.md §2.3).

- ``softmax``: torchvision's ``SSD.compute_loss``: softmax cross-entropy over positives and the
  hardest negatives (3 per positive), smooth L1 on positives, both divided by the positives.
- ``sigmoid``: TF OD API ``weighted_sigmoid`` + ``hard_example_miner`` (P-V2 config): per-anchor
  sigmoid cross-entropy summed over classes (background one-hot), the hardest anchors kept by NMS
  (IoU 0.99, at most 3000) and subsampled to 3 negatives per positive (at least 3 per image).
- ``focal``: TF ``weighted_sigmoid_focal`` (P-V3 config): focal loss (alpha 0.75, gamma 2) on every
  anchor with the background as all zeros, smooth L1 divided by the code size.
Positives are matched anchors; losses are normalised by their count over the batch (at least 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F
from torchvision.ops import nms, sigmoid_focal_loss

from ...ops.coder import BOX_CODER_WEIGHTS, decode, encode
from ...ops.matcher import match

LOSS_KINDS = ("softmax", "sigmoid", "focal")


@dataclass(frozen=True)
class LossConfig:
    kind: str = "softmax"
    iou_threshold: float = 0.5  # matcher
    neg_pos_ratio: float = 3.0  # softmax / sigmoid hard negatives per positive
    min_negatives: int = 3  # sigmoid: per image
    max_hard_examples: int = 3000  # sigmoid
    mining_nms: float = 0.99  # sigmoid
    focal_alpha: float = 0.75
    focal_gamma: float = 2.0
    coder_weights: tuple[float, float, float, float] = BOX_CODER_WEIGHTS

    def __post_init__(self):
        if self.kind not in LOSS_KINDS:
            raise ValueError(f"loss kind must be one of {LOSS_KINDS}, got {self.kind!r}")


def match_targets(anchors: torch.Tensor, targets: list[dict], iou_threshold: float) -> list[torch.Tensor]:
    return [match(t["boxes"], anchors, iou_threshold) for t in targets]


def ssd_loss(
    box_codes: torch.Tensor,
    class_logits: torch.Tensor,
    anchors: torch.Tensor,
    targets: list[dict],
    config: LossConfig,
    matches: list[torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """{"bbox_regression", "classification"} for (N, A, 4) codes and (N, A, K) logits.

    ``targets``: per image {"boxes": (n, 4) xyxy pixels, "labels": (n,) in 1..C-1}. K is C
    (column 0 the background) except for ``focal``, whose K = C - 1 logits have no background.
    """
    if matches is None:
        matches = match_targets(anchors, targets, config.iou_threshold)
    box_losses, class_targets, num_positive = [], [], 0
    for codes, target, matched in zip(box_codes, targets, matches, strict=True):
        positive = torch.where(matched >= 0)[0]
        gt_index = matched[positive]
        num_positive += gt_index.numel()
        wanted = encode(target["boxes"][gt_index], anchors[positive], config.coder_weights)
        per_anchor = F.smooth_l1_loss(codes[positive], wanted, reduction="none").sum(-1)
        box_losses.append(per_anchor)
        labels = torch.zeros(codes.shape[0], dtype=torch.int64, device=codes.device)
        labels[positive] = target["labels"][gt_index]
        class_targets.append(labels)
    labels = torch.stack(class_targets)  # (N, A), 0 = background
    normaliser = max(1, num_positive)
    if config.kind == "softmax":
        return _softmax_loss(box_losses, class_logits, labels, config, normaliser)
    if config.kind == "focal":
        one_hot = F.one_hot(labels, class_logits.shape[-1] + 1)[..., 1:].to(class_logits.dtype)
        cls = sigmoid_focal_loss(class_logits, one_hot, config.focal_alpha, config.focal_gamma, reduction="sum")
        box = torch.stack([b.sum() for b in box_losses]).sum() / 4  # TF normalize_loc_loss_by_codesize
        return {"bbox_regression": box / normaliser, "classification": cls / normaliser}
    return _mined_sigmoid_loss(box_losses, box_codes, class_logits, labels, matches, anchors, config, normaliser)


def _softmax_loss(box_losses, class_logits, labels, config: LossConfig, normaliser: int) -> dict[str, torch.Tensor]:
    """torchvision ``SSD.compute_loss``: hard negatives by sorting the background's loss."""
    num_classes = class_logits.shape[-1]
    cls_loss = F.cross_entropy(class_logits.reshape(-1, num_classes), labels.reshape(-1), reduction="none")
    cls_loss = cls_loss.view(labels.shape)
    positive = labels > 0
    num_negative = config.neg_pos_ratio * positive.sum(1, keepdim=True)
    negative_loss = cls_loss.clone()
    negative_loss[positive] = -float("inf")
    _, order = negative_loss.sort(1, descending=True)
    hard_negative = order.sort(1)[1] < num_negative  # the rank of each anchor's loss
    box = torch.stack([b.sum() for b in box_losses]).sum()
    cls = cls_loss[positive].sum() + cls_loss[hard_negative].sum()
    return {"bbox_regression": box / normaliser, "classification": cls / normaliser}


def _mined_sigmoid_loss(box_losses, box_codes, class_logits, labels, matches, anchors, config: LossConfig,
                        normaliser: int) -> dict[str, torch.Tensor]:  # fmt: skip
    """TF ``HardExampleMiner`` (loss_type CLASSIFICATION) over sigmoid cross-entropy with a background column."""
    one_hot = F.one_hot(labels, class_logits.shape[-1]).to(class_logits.dtype)
    cls_loss = F.binary_cross_entropy_with_logits(class_logits, one_hot, reduction="none").sum(-1)  # (N, A)
    box_total, cls_total = [], []
    for i, matched in enumerate(matches):
        with torch.no_grad():
            boxes = decode(box_codes[i].detach(), anchors, config.coder_weights)
            selected = nms(boxes, cls_loss[i].detach(), config.mining_nms)[: config.max_hard_examples]
            is_positive = matched[selected] >= 0
            max_negatives = max(config.min_negatives, int(config.neg_pos_ratio * int(is_positive.sum())))
            negative_rank = torch.cumsum((~is_positive).long(), 0)
            keep = selected[is_positive | (negative_rank <= max_negatives)]
        positive_loss = torch.zeros_like(cls_loss[i])
        positive_loss[matched >= 0] = box_losses[i]
        box_total.append(positive_loss[keep].sum())
        cls_total.append(cls_loss[i][keep].sum())
    box, cls = torch.stack(box_total).sum(), torch.stack(cls_total).sum()
    return {"bbox_regression": box / normaliser, "classification": cls / normaliser}
