"""Faster R-CNN box coding (Ren et al. 2015, Eq. 2) with weights, as SSD and SSDLite use it.

Codes are (w_x dx/w_a, w_y dy/h_a, w_w log(w/w_a), w_h log(h/h_a)) relative to an anchor;
(10, 10, 5, 5) in TF's ``faster_rcnn_box_coder`` and torchvision's SSD. Same arithmetic as
torchvision's ``BoxCoder.encode_single``/``decode_single``, batched over leading dimensions.
"""

from __future__ import annotations

import math

import torch

BOX_CODER_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
MAX_LOG_SCALE = math.log(1000.0 / 16)  # decoded sizes are clamped to exp(this) times the anchor


def encode(boxes: torch.Tensor, anchors: torch.Tensor, weights=BOX_CODER_WEIGHTS) -> torch.Tensor:
    """(..., 4) xyxy ``boxes`` as codes relative to ``anchors`` of the same shape."""
    wx, wy, ww, wh = weights
    anchor_w = anchors[..., 2] - anchors[..., 0]
    anchor_h = anchors[..., 3] - anchors[..., 1]
    anchor_x = anchors[..., 0] + 0.5 * anchor_w
    anchor_y = anchors[..., 1] + 0.5 * anchor_h
    box_w = boxes[..., 2] - boxes[..., 0]
    box_h = boxes[..., 3] - boxes[..., 1]
    box_x = boxes[..., 0] + 0.5 * box_w
    box_y = boxes[..., 1] + 0.5 * box_h
    return torch.stack(
        (
            wx * (box_x - anchor_x) / anchor_w,
            wy * (box_y - anchor_y) / anchor_h,
            ww * torch.log(box_w / anchor_w),
            wh * torch.log(box_h / anchor_h),
        ),
        dim=-1,
    )


def decode(codes: torch.Tensor, anchors: torch.Tensor, weights=BOX_CODER_WEIGHTS) -> torch.Tensor:
    """(..., A, 4) ``codes`` back to xyxy boxes; ``anchors`` (A, 4) broadcast over the leading dimensions."""
    anchors = anchors.to(codes.dtype)
    wx, wy, ww, wh = weights
    widths = anchors[:, 2] - anchors[:, 0]
    heights = anchors[:, 3] - anchors[:, 1]
    ctr_x = anchors[:, 0] + 0.5 * widths
    ctr_y = anchors[:, 1] + 0.5 * heights
    dx = codes[..., 0] / wx
    dy = codes[..., 1] / wy
    dw = torch.clamp(codes[..., 2] / ww, max=MAX_LOG_SCALE)
    dh = torch.clamp(codes[..., 3] / wh, max=MAX_LOG_SCALE)
    pred_x = dx * widths + ctr_x
    pred_y = dy * heights + ctr_y
    half_w = 0.5 * (torch.exp(dw) * widths)
    half_h = 0.5 * (torch.exp(dh) * heights)
    return torch.stack((pred_x - half_w, pred_y - half_h, pred_x + half_w, pred_y + half_h), dim=-1)
