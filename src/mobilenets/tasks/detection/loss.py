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

import torch
from torch.nn import functional as F
from torchvision.ops import nms, sigmoid_focal_loss

from ...models.ssdlite import LOSS_KINDS, HeadOutputs, LossConfig, SSDLite
from ...ops.coder import decode, encode
from ...ops.matcher import match

__all__ = ["LOSS_KINDS", "LossConfig", "detector_loss", "loss_from_outputs", "match_targets", "ssd_loss"]


def detector_loss(model: SSDLite, images: torch.Tensor, targets: list[dict]) -> dict[str, torch.Tensor]:
    """{"bbox_regression", "classification"} of ``model``'s preset (``model.recipe.loss``); targets as torchvision's.

    ``targets``: per image {"boxes": (n, 4) x1, y1, x2, y2 in pixels, "labels": (n,) int64 in 1..C-1}.
    """
    size = (images.shape[-2], images.shape[-1])
    model.check_targets(targets, size, images.shape[0])
    return loss_from_outputs(model, model.head_outputs(images), targets, size)


def loss_from_outputs(model: SSDLite, outputs: HeadOutputs, targets: list[dict], image_size: tuple[int, int]):
    """The losses of ``model``'s training-mode ``forward`` outputs (what ``detector_loss`` computes from images)."""
    codes, logits, anchors = outputs
    model.check_targets(targets, image_size, codes.shape[0])
    targets = [{"boxes": t["boxes"].to(codes), "labels": t["labels"].to(codes.device, torch.int64)}
               for t in targets]  # fmt: skip
    return ssd_loss(codes, logits, anchors, targets, model.recipe.loss)


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
