"""One network class for every family: stem -> stages -> head -> pool -> classifier."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
from torch import nn

from ..layers import InvertedResidual, make_activation

MIN_INPUT_SIZE = 32  # with the paper's stride-2 stem; a stride-1 stem halves it
MAX_WIDTH_MULT = 10.0  # 10x the paper's widths is ~100x its weights; beyond that it is a typo, not a model


def check_width(width_mult: float, name: str = "width_mult (alpha)", paper: str = "") -> None:
    """A finite width multiplier in (0, MAX_WIDTH_MULT]: checked before any layer is allocated."""
    if isinstance(width_mult, bool) or not isinstance(width_mult, numbers.Real):
        raise ValueError(f"{name} must be a number, got {width_mult!r}")
    if not math.isfinite(width_mult) or not 0 < width_mult <= MAX_WIDTH_MULT:
        hint = f"; the paper uses {paper}" if paper else ""
        raise ValueError(f"{name} must be in (0, {MAX_WIDTH_MULT:g}], got {width_mult}{hint}")


def check_common(num_classes: int, in_chans: int, drop_rate: float) -> None:
    """The options every builder takes, with the valid range in the message."""
    for key, value, low in (("num_classes", num_classes, 0), ("in_chans", in_chans, 1)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            what = ">= 0 (0 removes the classifier)" if low == 0 else ">= 1 (1: grayscale, 3: RGB)"
            raise ValueError(f"{key} must be an integer {what}, got {value!r}")
    if isinstance(drop_rate, bool) or not isinstance(drop_rate, numbers.Real) or not 0 <= drop_rate < 1:
        raise ValueError(f"drop_rate must be a number in [0, 1), got {drop_rate!r}")


def _check_stem_stride(stem_stride: int) -> None:
    """``stem_stride=1`` is an opt-in adaptation for small inputs (28x28 Fashion-MNIST, 32x32 CIFAR)."""
    if stem_stride not in (1, 2):
        raise ValueError(
            f"stem_stride must be 2 (the paper's network) or 1 (for inputs under 64x64), got {stem_stride}"
        )


@dataclass(frozen=True)
class FeatureInfo:
    """A feature map a detection or segmentation head can tap.

    ``module`` names the module whose output it is; names ending in ``.expand``
    are the expansion-layer output of an inverted residual (SSDLite's C4).
    """

    module: str
    channels: int
    reduction: int
    kind: str = "stage"  # "stage": a stage's last block output; "expansion": a block's expansion


class MobileNet(nn.Module):
    """The generic network every registered model is an instance of.

    ``stages`` is a list of lists of blocks; ``head`` is the last 1x1 conv
    (``nn.Identity`` for V1 and ShuffleNet); ``pre_logits`` is MobileNetV3's
    efficient last stage (a 1x1 conv with bias and no BN on the pooled features).
    """

    def __init__(
        self,
        stem: nn.Module,
        stages: list[list[nn.Module]],
        stage_strides: list[int],
        stem_stride: int,
        stage_channels: list[int],
        head: nn.Module,
        head_channels: int,
        num_classes: int,
        in_chans: int,
        drop_rate: float,
        pre_logits_channels: int = 0,
        pre_logits_act: str = "hswish",
        family: str = "",
        options: dict | None = None,
    ):
        super().__init__()
        check_common(num_classes, in_chans, drop_rate)
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.family = family
        self.options = dict(options or {})
        self.name = family  # create_model() sets the registered name
        self.labels: list[str] | None = None  # class names, when known (set by training, load_model, converters)
        self.preprocessing = None  # the input contract of the weights (mobilenets.preprocessing.Preprocessing)
        self.metadata: dict = {}

        self.stem = stem
        self.stages = nn.Sequential(*(nn.Sequential(*blocks) for blocks in stages))
        self.head = head
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        if pre_logits_channels:
            self.pre_logits = nn.Sequential(
                nn.Linear(head_channels, pre_logits_channels), make_activation(pre_logits_act)
            )
            self.num_features = pre_logits_channels
        else:
            self.pre_logits = nn.Identity()
            self.num_features = head_channels
        self.dropout = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

        self.feature_info = self._feature_info(stem_stride, stage_strides, stage_channels, head_channels)
        # Only the opt-in stride-1 stem changes it (ShuffleNet's conv + max-pool stem counts as 4).
        self.min_input_size = MIN_INPUT_SIZE // 2 if stem_stride == 1 else MIN_INPUT_SIZE
        self._init_weights()

    def _feature_info(self, stem_stride, stage_strides, stage_channels, head_channels) -> list[FeatureInfo]:
        infos = []
        reduction = stem_stride
        for i, (stage, stride, chs) in enumerate(zip(self.stages, stage_strides, stage_channels, strict=True)):
            for j, block in enumerate(stage):
                if isinstance(block, InvertedResidual) and block.has_expand:
                    # Expansion outputs sit at the block's input resolution.
                    infos.append(
                        FeatureInfo(f"stages.{i}.{j}.expand", block.dw.conv.in_channels, reduction, "expansion")
                    )
                if j == 0:
                    reduction *= stride
            infos.append(FeatureInfo(f"stages.{i}", chs, reduction))
        if not isinstance(self.head, nn.Identity):
            infos.append(FeatureInfo("head", head_channels, reduction))
        return infos

    def stage_features(self) -> list[FeatureInfo]:
        """The end of each stage (and the head), like timm's ``feature_info``."""
        return [f for f in self.feature_info if f.kind == "stage"]

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def check_input(self, x: torch.Tensor) -> None:
        """Clear errors for inputs the network cannot take (shape checks only, export-safe)."""
        if x.dim() != 4:
            raise ValueError(f"{self.name} expects a 4-D batch (N, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_chans:
            raise ValueError(
                f"{self.name} was built for {self.in_chans} input channels but got {x.shape[1]}; "
                f"create it with in_chans={x.shape[1]}"
            )
        if min(x.shape[-2:]) < self.min_input_size:
            raise ValueError(
                f"{self.name} needs inputs of at least {self.min_input_size}x{self.min_input_size}, "
                f"got {x.shape[-2]}x{x.shape[-1]}; resize or pad the images"
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map before pooling."""
        self.check_input(x)
        return self.head(self.stages(self.stem(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pre_logits(self.flatten(self.pool(x)))
        return x if pre_logits else self.classifier(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor, taps: list[str] | None = None) -> list[torch.Tensor]:
        """Feature maps named in ``taps`` (``FeatureInfo.module`` names), in network order.

        Defaults to every stage end. Stops after the last requested tap.
        """
        known = {f.module for f in self.feature_info}
        taps = [f.module for f in self.stage_features()] if taps is None else list(taps)
        unknown = [t for t in taps if t not in known]
        if unknown:
            raise ValueError(f"unknown feature taps {unknown}; valid: {sorted(known)}")
        wanted = set(taps)
        found: dict[str, torch.Tensor] = {}
        self.check_input(x)
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            for j, block in enumerate(stage):
                tap = f"stages.{i}.{j}.expand"
                if tap in wanted:
                    x, found[tap] = block.forward_with_expansion(x)
                else:
                    x = block(x)
            found[f"stages.{i}"] = x
            if wanted <= found.keys():
                break
        if "head" in wanted:
            found["head"] = self.head(x)
        return [found[t] for t in taps]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier (fine-tuning on a new label set)."""
        check_common(num_classes, self.in_chans, 0.0)
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        if num_classes:
            nn.init.normal_(self.classifier.weight, 0, 0.01)
            nn.init.zeros_(self.classifier.bias)

    @property
    def config(self) -> dict:
        """Everything needed to rebuild this model: family builder and its options."""
        return {"name": self.name, "family": self.family, "options": dict(self.options)}
