"""SSDLite (P-V2 Sec 6.2, P-V3 Sec 6.3): SSD with every prediction conv depthwise-separable.

Backbone taps (spec.md §3.9): V1 the OS16 and OS32 pointwise outputs; V2 the expansion of
layer 15 (OS16) and the last 1x1 conv (OS32); V3 the expansion of bneck 13 (Large) / 9 (Small),
C4, and the last conv, C5, with the channels between them halved (``reduced_tail``, Table 6's "+").
Then four extra blocks, 1x1 (d/2) -> 3x3 stride-2 depthwise -> 1x1 (d), d = 512, 256, 256, 128,
and on each of the six maps a box and a class predictor: 3x3 depthwise + BN + ReLU6, 1x1 with bias.

Presets: ``tf`` (the papers' TF Object Detection API configs: 3 boxes in the lowest layer,
sigmoid + hard-example mining for V1/V2, focal loss with the background as zeros and class bias
-4.6 for V3) and ``torchvision`` (``ssdlite320_mobilenet_v3_large``: 6 boxes everywhere, softmax +
3:1 hard negatives, BN eps 1e-3, extras never width-scaled, N(0, 0.03) init).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
from torch import nn

from ..layers import ConvNormAct, NormConfig
from ..ops.anchors import AnchorConfig, default_boxes
from ..ops.coder import BOX_CODER_WEIGHTS, decode
from ..ops.postprocess import FinalDetections, PostprocessConfig, padded_postprocess, postprocess
from ..registry import Published, register
from .backbone import HEAD_FAMILIES, backbone_family, build_backbone, c4_c5_taps
from .net import FeatureNetwork, Network, check_width
from .signature import Signature, TensorSpec

BACKBONES = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small")
PRESETS = ("tf", "torchvision")
EXTRA_DEPTHS = (512, 256, 256, 128)  # P-V2 Sec 6.2 / TF layer_depth [-1, -1, 512, 256, 256, 128]
MIN_DEPTH = 16  # TF ``min_depth`` and torchvision's ``max(16, ...)``
IMAGE_SIZE = 320  # P-V2 Table 6 / P-V3 Table 6 and torchvision's ssdlite320
INIT_STD = 0.03  # TF truncated_normal stddev 0.03; torchvision _normal_init std 0.03
LOSS_KINDS = ("softmax", "sigmoid", "focal")


@dataclass(frozen=True)
class LossConfig:
    """The training loss a preset fixes (``mobilenets.tasks.detection.loss.ssd_loss`` computes it).

    ``kind`` also fixes how ``forward`` turns logits into scores; ``coder_weights`` how box codes decode.
    """

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


@dataclass(frozen=True)
class Recipe:
    """What a preset fixes besides the layers: default boxes, loss, class encoding, init, post-processing."""

    anchors: AnchorConfig
    loss: LossConfig
    background_logit: bool  # False: sigmoid over the foreground classes only (TF encode_background_as_zeros)
    class_bias: float  # initial bias of every class logit (TF class_prediction_bias_init)
    scale_extras: bool  # extras' widths times width_mult (TF depth_multiplier); torchvision keeps them
    init_backbone: bool  # N(0, 0.03) in the backbone too (torchvision without ImageNet weights)
    post: PostprocessConfig


_TF_POST = PostprocessConfig(score_thresh=1e-8, nms_thresh=0.6, topk_candidates=100, detections_per_img=100)


def recipe(preset: str, backbone: str) -> Recipe:
    """The recipe of ``preset`` for ``backbone`` (heads.md §2.2-2.3)."""
    if preset == "torchvision":
        return Recipe(AnchorConfig(style="torchvision"), LossConfig(kind="softmax"), background_logit=True,
                      class_bias=0.0, scale_extras=False, init_backbone=True, post=PostprocessConfig())  # fmt: skip
    if backbone.startswith("mobilenet_v3"):  # ssdlite_mobilenet_v3_{large,small}_320x320_coco.config
        return Recipe(AnchorConfig(style="tf"), LossConfig(kind="focal"), background_logit=False, class_bias=-4.6,
                      scale_extras=True, init_backbone=False, post=_TF_POST)  # fmt: skip
    # ssdlite_mobilenet_v2_coco.config (and the V1 one)
    return Recipe(AnchorConfig(style="tf"), LossConfig(kind="sigmoid"), background_logit=True, class_bias=0.0,
                  scale_extras=True, init_backbone=False, post=_TF_POST)  # fmt: skip


class ExtraBlock(nn.Module):
    """1x1 to d/2 -> 3x3 stride-2 depthwise -> 1x1 to d, each BN + ReLU6 (TF/torchvision extra layers)."""

    def __init__(self, in_chs: int, out_chs: int, norm: NormConfig, padding: str):
        super().__init__()
        mid = out_chs // 2
        self.reduce = ConvNormAct(in_chs, mid, 1, act="relu6", norm=norm)
        self.dw = ConvNormAct(mid, mid, 3, 2, groups=mid, act="relu6", norm=norm, padding=padding)
        self.expand = ConvNormAct(mid, out_chs, 1, act="relu6", norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(self.dw(self.reduce(x)))


class Predictor(nn.Module):
    """SSDLite's depthwise-separable predictor: 3x3 depthwise + BN + ReLU6, then 1x1 with bias."""

    def __init__(self, in_chs: int, out_chs: int, norm: NormConfig, padding: str):
        super().__init__()
        self.dw = ConvNormAct(in_chs, in_chs, 3, groups=in_chs, act="relu6", norm=norm, padding=padding)
        self.pw = nn.Conv2d(in_chs, out_chs, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class HeadOutputs(NamedTuple):
    box_codes: torch.Tensor  # (N, A, 4), relative to the anchors (coder weights 10, 10, 5, 5)
    class_logits: torch.Tensor  # (N, A, K): K = num_classes, or num_classes - 1 without a background logit
    anchors: torch.Tensor  # (A, 4) xyxy pixels of the input


class Detections(NamedTuple):
    boxes: torch.Tensor  # (N, A, 4) xyxy pixels, clipped to the image
    scores: torch.Tensor  # (N, A, num_classes); column 0 the background (0 where no background logit)


def _flatten(x: torch.Tensor, columns: int) -> torch.Tensor:
    """(N, boxes * columns, H, W) -> (N, H * W * boxes, columns): location-major, as the anchors."""
    n, _, h, w = x.shape
    return x.view(n, -1, columns, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, columns)


class SSDLite(nn.Module):
    """SSDLite on a MobileNet backbone; ``forward`` gives fixed-shape decoded boxes and per-class scores.

    ``detect`` (or ``postprocess`` on ``forward``'s outputs) gives torchvision-style per-image dicts;
    ``mobilenets.tasks.detection.loss.detector_loss(model, images, targets)`` the training losses of the preset.
    """

    task = "detection"
    paper_input_size = IMAGE_SIZE  # what the papers count its MAdds at (P-V2/P-V3 Table 6)

    def __init__(
        self,
        *,
        backbone: FeatureNetwork,
        num_classes: int,
        recipe: Recipe,
        extra_depths: tuple[int, ...],
        norm: NormConfig,
        padding: str,
        options: dict,
    ):
        super().__init__()
        self.backbone = backbone
        self.num_classes = num_classes
        self.in_chans = backbone.network.in_chans
        self.min_input_size = backbone.network.min_input_size
        self.recipe = recipe
        self.family = "ssdlite"
        self.name = "ssdlite"  # create_model() sets the registered name
        self.options = dict(options)
        self.labels: list[str] | None = None
        self.preprocessing = None
        self.metadata: dict = {}

        chs = [f.channels for f in backbone.feature_info]
        extras = []
        for depth in extra_depths:
            extras.append(ExtraBlock(chs[-1], depth, norm, padding))
            chs.append(depth)
        self.extras = nn.ModuleList(extras)
        self.feature_channels = chs
        self.num_anchors = recipe.anchors.num_anchors(len(chs))
        self.num_logits = num_classes if recipe.background_logit else num_classes - 1
        pairs = list(zip(chs, self.num_anchors, strict=True))
        self.box_head = nn.ModuleList(Predictor(c, a * 4, norm, padding) for c, a in pairs)
        self.class_head = nn.ModuleList(Predictor(c, a * self.num_logits, norm, padding) for c, a in pairs)
        self._init_weights()

    def _init_weights(self) -> None:
        parts = [self.extras, self.box_head, self.class_head] + ([self.backbone] if self.recipe.init_backbone else [])
        for part in parts:
            for m in part.modules():
                if isinstance(m, nn.Conv2d):
                    if self.recipe.init_backbone:  # torchvision: N(0, 0.03)
                        nn.init.normal_(m.weight, 0.0, INIT_STD)
                    else:  # TF: truncated at two standard deviations
                        nn.init.trunc_normal_(m.weight, 0.0, INIT_STD, -2 * INIT_STD, 2 * INIT_STD)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
        for predictor in self.class_head:
            nn.init.constant_(predictor.pw.bias, self.recipe.class_bias)

    # --- inference -------------------------------------------------------------------------

    def head_outputs(self, images: torch.Tensor) -> HeadOutputs:
        """Raw box codes and class logits of every default box, and the boxes (for ``images``' size)."""
        features = self.backbone(images)
        x = features[-1]
        for extra in self.extras:
            x = extra(x)
            features.append(x)
        codes = torch.cat([_flatten(h(f), 4) for h, f in zip(self.box_head, features, strict=True)], dim=1)
        k = self.num_logits
        logits = torch.cat([_flatten(h(f), k) for h, f in zip(self.class_head, features, strict=True)], dim=1)
        grids = [(f.shape[-2], f.shape[-1]) for f in features]
        anchors = default_boxes(self.recipe.anchors, grids, (images.shape[-2], images.shape[-1]), codes.dtype)
        return HeadOutputs(codes, logits, anchors.to(codes.device))

    def forward(self, images: torch.Tensor) -> Detections | HeadOutputs:
        """Normalized (N, C, H, W) images -> every default box decoded, with its class scores.

        In training mode the raw ``head_outputs``, which the detection task's loss takes (so that
        DistributedDataParallel sees the forward); ``tasks.detection.loss.detector_loss`` does both at once.
        """
        if self.training:
            return self.head_outputs(images)
        codes, logits, anchors = self.head_outputs(images)
        boxes = decode(codes, anchors, self.recipe.loss.coder_weights)
        height, width = images.shape[-2], images.shape[-1]
        # torchvision.ops.clip_boxes_to_image, written out so the graph keeps static shapes.
        x = boxes[..., 0::2].clamp(min=0, max=width)
        y = boxes[..., 1::2].clamp(min=0, max=height)
        boxes = torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)
        if self.recipe.loss.kind == "softmax":
            scores = torch.softmax(logits, dim=-1)
        elif self.recipe.background_logit:
            scores = torch.sigmoid(logits)
        else:
            scores = torch.cat([torch.zeros_like(logits[..., :1]), torch.sigmoid(logits)], dim=-1)
        return Detections(boxes, scores)

    def postprocess(self, boxes: torch.Tensor, scores: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Score threshold, per-class top-k, batched NMS and top-k of the preset (``recipe.post``)."""
        return postprocess(boxes, scores, self.recipe.post)

    @torch.no_grad()
    def detect(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Per image {"boxes", "scores", "labels"} as torchvision's detectors return them."""
        return self.postprocess(*self(images))

    def with_postprocess(self, max_detections: int | None = None) -> EndToEndDetector:
        """This detector followed by its post-processing, as one module: images in, final detections out.

        What ``export`` writes and ``bench`` times for a detector (NMS inside the graph).
        """
        return EndToEndDetector(self, max_detections)

    # --- training -----------------------------------------------------------------------------

    def check_targets(self, targets: list[dict], image_size: tuple[int, int], batch: int) -> None:
        """Clear errors for targets the loss cannot use."""
        if not isinstance(targets, list | tuple) or len(targets) != batch:
            got = len(targets) if isinstance(targets, list | tuple) else type(targets).__name__
            raise ValueError(f"targets must be a list with one dict per image ({batch}), got {got}")
        height, width = image_size
        for i, target in enumerate(targets):
            if not isinstance(target, dict) or "boxes" not in target or "labels" not in target:
                raise ValueError(f"targets[{i}] must be a dict with 'boxes' (n, 4) and 'labels' (n,)")
            boxes, labels = target["boxes"], target["labels"]
            if not torch.is_tensor(boxes) or boxes.dim() != 2 or boxes.shape[-1] != 4:
                shape = tuple(boxes.shape) if torch.is_tensor(boxes) else type(boxes).__name__
                raise ValueError(f"targets[{i}]['boxes'] must be a float tensor (n, 4) of x1, y1, x2, y2, got {shape}")
            if not torch.is_tensor(labels) or labels.shape != boxes.shape[:1] or labels.is_floating_point():
                shape = tuple(labels.shape) if torch.is_tensor(labels) else type(labels).__name__
                raise ValueError(f"targets[{i}]['labels'] must be an int64 tensor ({boxes.shape[0]},), got {shape}")
            if labels.numel() and (labels.min() < 1 or labels.max() >= self.num_classes):
                low, high, top = int(labels.min()), int(labels.max()), self.num_classes - 1
                raise ValueError(f"targets[{i}]['labels'] must be in 1..{top} (0 is the background of a "
                                 f"{self.num_classes}-class model), got {low}..{high}")  # fmt: skip
            flat = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
            if flat.any():
                j = int(flat.nonzero()[0])
                raise ValueError(f"targets[{i}]['boxes'][{j}] = {boxes[j].tolist()} has zero area; boxes are x1, y1, "
                                 "x2, y2 pixels with x2 > x1 and y2 > y1 (drop degenerate boxes first)")  # fmt: skip
            outside = (boxes[:, 0] < 0) | (boxes[:, 1] < 0) | (boxes[:, 2] > width) | (boxes[:, 3] > height)
            if outside.any():
                j = int(outside.nonzero()[0])
                raise ValueError(f"targets[{i}]['boxes'][{j}] = {boxes[j].tolist()} lies outside the {height}x{width} "
                                 "image; clip boxes to the image (torchvision.ops.clip_boxes_to_image)")  # fmt: skip

    @property
    def backbone_network(self) -> Network:
        """The classification network the head taps (what ``--init-backbone`` fills)."""
        return self.backbone.network

    @property
    def config(self) -> dict:
        return {"name": self.name, "family": self.family, "options": dict(self.options)}

    @property
    def signature(self) -> Signature:
        """A normalized image batch in; every default box decoded and its per-class scores out (eval mode)."""
        image = TensorSpec("input", ("N", self.in_chans, "H", "W"), "normalized image batch")
        boxes = TensorSpec("boxes", ("N", "A", 4), "x1, y1, x2, y2 in pixels, clipped to the image")
        scores = TensorSpec("scores", ("N", "A", self.num_classes), "class probabilities (0: background)")
        return Signature("detection", (image,), (boxes, scores))


class EndToEndDetector(nn.Module):
    """An SSDLite detector and its post-processing in one forward: normalized images -> ``FinalDetections``.

    Outputs are padded to ``max_detections`` (default the preset's 300) so that every shape is static
    but the NMS inside; ``num_detections`` says how many rows of each image are real.
    """

    task = "detection"

    def __init__(self, detector: SSDLite, max_detections: int | None = None):
        super().__init__()
        if max_detections is not None and (isinstance(max_detections, bool) or not isinstance(max_detections, int)
                                           or max_detections < 1):  # fmt: skip
            raise ValueError(f"max_detections must be a positive integer, got {max_detections!r}")
        self.detector = detector.eval()
        post = detector.recipe.post
        self.post = post if max_detections is None else replace(post, detections_per_img=max_detections)
        for name in ("name", "in_chans", "min_input_size", "num_classes", "labels", "preprocessing"):
            setattr(self, name, getattr(detector, name))

    def forward(self, images: torch.Tensor) -> FinalDetections:
        return padded_postprocess(*self.detector(images), self.post)

    @property
    def signature(self) -> Signature:
        n, d = "N", self.post.detections_per_img
        image = TensorSpec("input", (n, self.in_chans, "H", "W"), "normalized image batch")
        return Signature("detection", (image,), (
            TensorSpec("boxes", (n, d, 4), "x1, y1, x2, y2 in pixels, best first; zeros past num_detections"),
            TensorSpec("scores", (n, d), "score of each detection; 0 past num_detections"),
            TensorSpec("labels", (n, d), "class index in 1..C-1 (int64); 0 past num_detections"),
            TensorSpec("num_detections", (n,), "detections found per image (int64)"),
        ))  # fmt: skip

    @staticmethod
    def output_error(outs: list, refs: list) -> float:
        """How far a runtime's detections are from PyTorch's, whatever the order of equal scores.

        Counts must agree. Each reference detection is matched to the output detection of its class
        with the nearest box; the error is the largest box difference relative to the largest
        coordinate, or score difference (inf for a detection without a counterpart). Where an image's
        scores are not all distinct (an untrained head gives every box the same score), which boxes
        win is arbitrary: only the sorted scores are compared there.
        """
        import numpy as np

        boxes, scores, labels, counts = (np.asarray(o) for o in outs)
        rboxes, rscores, rlabels, rcounts = (np.asarray(r) for r in refs)
        if boxes.shape != rboxes.shape or not np.array_equal(counts, rcounts):
            return float("inf")
        scale = float(np.abs(rboxes).max()) or 1.0
        worst = 0.0
        for i, n in enumerate(rcounts.tolist()):
            worst = max(worst, float(np.abs(np.sort(scores[i, :n]) - np.sort(rscores[i, :n])).max(initial=0.0)))
            if np.unique(rscores[i, :n]).size < n:
                continue
            for j in range(n):
                same = np.flatnonzero(labels[i, :n] == rlabels[i, j])
                if same.size == 0:
                    return float("inf")
                worst = max(worst, float((np.abs(boxes[i, same] - rboxes[i, j]).max(axis=1) / scale).min()))
        return worst


def ssdlite(
    backbone: str = "mobilenet_v3_large",
    width_mult: float | None = None,
    num_classes: int = 91,
    preset: str = "tf",
    in_chans: int = 3,
    reduced_tail: bool | None = None,
    bn_eps: float = 1e-3,
    bn_momentum: float = 0.03,
    padding: str = "symmetric",
    score_thresh: float | None = None,
    nms_thresh: float | None = None,
    detections_per_img: int | None = None,
) -> SSDLite:
    """SSDLite on ``backbone`` at ``width_mult``; ``num_classes`` counts the background.

    ``backbone``: a registered MobileNetV1/V2/V3 classifier (``mobilenet_v2_075``), or one of ``BACKBONES``,
    the family at ``width_mult`` (default 1.0; the registered detectors' form). ``width_mult`` overrides a
    registered name's width. ``reduced_tail`` (V3 only) defaults to True, P-V3 Table 6's "+" rows.
    ``score_thresh``, ``nms_thresh`` and ``detections_per_img`` override the preset's post-processing.
    """
    name = f"{backbone}_100" if backbone in BACKBONES else backbone
    if backbone in BACKBONES and width_mult is None:
        width_mult = 1.0
    try:
        family = backbone_family(name, HEAD_FAMILIES, "ssdlite")
    except ValueError:
        raise ValueError(f"ssdlite backbone must be one of {', '.join(BACKBONES)} or a registered MobileNetV1, V2 "
                         f"or V3 classifier (mobilenet_v2_075...), got {backbone!r}") from None  # fmt: skip
    if preset not in PRESETS:
        raise ValueError(f"ssdlite preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 2:
        raise ValueError(f"num_classes counts the background and must be an integer >= 2 (COCO: 91), "
                         f"got {num_classes!r}")  # fmt: skip
    if width_mult is not None:
        check_width(width_mult, paper="0.35 to 1.4")
    is_v3 = family == "mobilenet_v3"
    if reduced_tail and not is_v3:
        raise ValueError(f"reduced_tail halves MobileNetV3's C4-C5 layers; {backbone} has none (leave it unset)")
    reduced_tail = is_v3 if reduced_tail is None else reduced_tail
    features = build_backbone(name, c4_c5_taps, reduced_tail="c4" if reduced_tail else None, in_chans=in_chans,
                              width_mult=width_mult, bn_eps=bn_eps, bn_momentum=bn_momentum,
                              padding=padding)  # fmt: skip
    rules = recipe(preset, family)
    post = rules.post
    for key, value in (("score_thresh", score_thresh), ("nms_thresh", nms_thresh),
                       ("detections_per_img", detections_per_img)):  # fmt: skip
        if value is not None:
            post = replace(post, **{key: value})
    rules = replace(rules, post=post)
    scale = features.network.options["width_mult"] if rules.scale_extras else 1.0
    depths = tuple(max(MIN_DEPTH, int(d * scale)) for d in EXTRA_DEPTHS)
    options = dict(backbone=backbone, width_mult=width_mult, num_classes=num_classes, preset=preset,
                   in_chans=in_chans, reduced_tail=reduced_tail, bn_eps=bn_eps, bn_momentum=bn_momentum,
                   padding=padding, score_thresh=score_thresh, nms_thresh=nms_thresh,
                   detections_per_img=detections_per_img)  # fmt: skip
    model = SSDLite(backbone=features, num_classes=num_classes, recipe=rules,
                    extra_depths=depths, norm=NormConfig(bn_eps, bn_momentum), padding=padding,
                    options={k: v for k, v in options.items() if v is not None})  # fmt: skip
    if in_chans == 3:
        from ..preprocessing import Preprocessing

        # Both references feed [-1, 1] inputs (TF: 2x - 1; torchvision: mean = std = 0.5) resized to 320x320.
        model.preprocessing = Preprocessing((IMAGE_SIZE, IMAGE_SIZE), IMAGE_SIZE, mean=(0.5,) * 3, std=(0.5,) * 3)
    return model


def check_detector(model: nn.Module | str) -> None:
    """A ValueError naming the detectors when ``model`` (or a registered name) is not one."""
    from ..registry import get_entry, list_models

    task = get_entry(model).task if isinstance(model, str) else getattr(model, "task", "classification")
    if task != "detection":
        name = model if isinstance(model, str) else getattr(model, "name", type(model).__name__)
        raise ValueError(f"{name} is a {task} model, not a detector; use one of "
                         f"{', '.join(list_models('*', task='detection'))}")  # fmt: skip


# P-V2 Table 6 and P-V3 Table 6 (COCO, 320x320); torchvision's SSDLite320_MobileNet_V3_Large_Weights.
_COCO80 = 81  # the papers' 80 COCO classes + background (P-V2 Sec 6.2)
_COCO90 = 91  # COCO's 90 category ids + background: TF OD API configs (num_classes: 90) and torchvision
_VARIANTS = {
    "ssdlite_mobilenet_v1_100": (dict(backbone="mobilenet_v1"), [
        Published("P-V2 Table 6 (80 classes + background)", params="5.1M", madds="1.3B", resolution=320,
                  num_classes=_COCO80),
        Published("P-V3 Table 6 (80 classes + background)", params="5.1M", madds="1.3B", resolution=320,
                  num_classes=_COCO80),
    ]),
    "ssdlite_mobilenet_v2_100": (dict(backbone="mobilenet_v2"), [
        Published("P-V2 Table 6 (80 classes + background)", params="4.3M", madds="0.8B", resolution=320,
                  num_classes=_COCO80),
        Published("P-V3 Table 6", params="4.3M", madds="0.80B", resolution=320, num_classes=_COCO80,
                  erratum="P-V3 Table 6 prints 0.80B for V2 SSDLite beside P-V2's 4.3M; 80+1 classes give "
                  "4.34M / 0.789B, 90+1 give 4.50M / 0.804B: no class count gives both; checked against "
                  "P-V2 Table 6's 4.3M / 0.8B instead", corrected_params="4.3M", corrected_madds="0.8B"),
    ]),
    "ssdlite_mobilenet_v3_large_100": (dict(backbone="mobilenet_v3_large"), [
        Published("P-V3 Table 6 (V3+, 90 classes + background)", params="3.22M", madds="0.51B", resolution=320,
                  num_classes=_COCO90),
    ]),
    "ssdlite_mobilenet_v3_small_100": (dict(backbone="mobilenet_v3_small"), [
        Published("P-V3 Table 6 (V3-Small+, 90 classes + background)", params="1.77M", madds="0.16B", resolution=320,
                  num_classes=_COCO90),
    ]),
    "ssdlite320_mobilenet_v3_large": (dict(backbone="mobilenet_v3_large", preset="torchvision"), [
        Published("torchvision SSDLite320_MobileNet_V3_Large_Weights", params="3,440,060", madds="0.583B",
                  resolution=320, num_classes=_COCO90, tolerance=0.0),
    ]),
}  # fmt: skip

# A head-only figure (extras + predictors, not the backbone), so no registration carries it: tests check it.
TABLE5_HEAD = Published(
    "P-V2 Table 5 (SSDLite head and extras, 80 classes + background, 300x300)", params="2.1M", madds="0.35B",
    resolution=300, num_classes=_COCO80, tolerance=0.03, options={"backbone": "mobilenet_v2"},
    erratum="P-V2 Table 5 prints 0.35B for the SSDLite head; it has 2.11M params (as printed) and 0.171B MAdds at "
    "300x300 (0.178B at 320x320): 0.35B is its FLOPs (2 per multiply-add); checked as 0.175B MAdds",
    corrected_params="2.1M", corrected_madds="0.175B",
)  # fmt: skip

for _name, (_fixed, _published) in _VARIANTS.items():
    register(_name, ssdlite, _fixed, _published, _name.replace("_", " "), task="detection")
