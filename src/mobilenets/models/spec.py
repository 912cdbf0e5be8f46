"""Widths as data: every family resolves its paper table into a list of ``BlockSpec``, one per block.

One builder (``build_block``) turns a spec into a module, and ``apply_output_stride`` turns the
strides past an output stride into dilation (as DeepLab, timm and torchvision do). A spec list
edited by hand or by NetAdapt (one block's expansion narrowed, one residual group's width
narrowed) builds, saves and reloads like a table's: model configs store it as plain dicts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import nn

from ..layers import ACTIVATIONS, ConvNormAct, DepthwiseSeparable, InvertedResidual, NormConfig, ShuffleUnit

KINDS = ("ds", "ir", "conv", "shuffle")


@dataclass(frozen=True)
class BlockSpec:
    """One block, fully resolved: every width is a channel count, not a multiplier.

    ``kind``: "ds" (V1 depthwise separable: 3x3 dw, then 1x1 to ``out_chs``), "ir" (inverted
    residual: 1x1 to ``exp_chs`` unless it equals ``in_chs``, ``kernel`` dw, SE of ``se_chs``,
    1x1 to ``out_chs``), "conv" (a full ``kernel`` conv, P-V1 Table 4), "shuffle" (ShuffleNet unit
    with bottleneck ``exp_chs``, ``groups`` and ``first_groups`` for its first pointwise conv).
    ``stage`` is the index of the stage the block belongs to (state-dict keys ``stages.{stage}.{i}``).
    """

    kind: str
    in_chs: int
    out_chs: int
    stage: int
    kernel: int = 3
    stride: int = 1
    dilation: int = 1
    exp_chs: int = 0
    se_chs: int = 0
    act: str = "relu"
    groups: int = 1
    first_groups: int = 1
    shuffle: bool = True
    shuffle_order: str = "paper"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"block kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.act not in ACTIVATIONS:
            raise ValueError(f"block act must be one of {', '.join(ACTIVATIONS)}, got {self.act!r}")
        if self.stride not in (1, 2) or self.dilation < 1 or self.kernel < 1 or self.stage < 0:
            raise ValueError(f"invalid block {self}: need stride 1 or 2, dilation >= 1, kernel >= 1, stage >= 0")
        for name in ("in_chs", "out_chs"):
            if getattr(self, name) < 1:
                raise ValueError(f"block {name} must be >= 1, got {getattr(self, name)}")
        if self.kind in ("ir", "shuffle") and self.exp_chs < 1:
            raise ValueError(f"an {self.kind!r} block needs exp_chs >= 1, got {self.exp_chs}")
        if self.kind == "shuffle" and (self.exp_chs % self.groups or self.out_chs % self.groups):
            raise ValueError(f"shuffle block widths {self.exp_chs}/{self.out_chs} must be divisible by {self.groups}")

    @property
    def residual(self) -> bool:
        """Whether an identity shortcut joins this block's input and output (they share a width)."""
        return self.kind in ("ir", "shuffle") and self.stride == 1 and self.in_chs == self.out_chs

    def to_dict(self) -> dict:
        """Only the fields that differ from the defaults, for short configs."""
        defaults = BlockSpec(kind="ds", in_chs=1, out_chs=1, stage=0)
        always = {"kind", "in_chs", "out_chs", "stage"}
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name in always or getattr(self, f.name) != getattr(defaults, f.name)
        }

    @classmethod
    def from_dict(cls, data: dict) -> BlockSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown block spec fields {unknown}; known: {sorted(known)}")
        return cls(**data)

    def replace(self, **changes) -> BlockSpec:
        return dataclasses.replace(self, **changes)


def check_chain(specs: list[BlockSpec], in_chs: int) -> None:
    """Each block must take the previous block's width, and stages must be numbered in order."""
    if not specs:
        raise ValueError("a network needs at least one block")
    stage = 0
    for i, spec in enumerate(specs):
        if spec.in_chs != in_chs:
            raise ValueError(f"block {i} takes {spec.in_chs} channels but the one before it gives {in_chs}")
        if spec.stage not in (stage, stage + 1) or (i == 0 and spec.stage != 0):
            raise ValueError(f"block {i} is in stage {spec.stage} after stage {stage}: stages must count up by 1")
        in_chs, stage = spec.out_chs, spec.stage


def group_stages(widths: list[int]) -> list[int]:
    """The stage of each block: a new stage starts where the output width changes (every family)."""
    stages, stage = [], -1
    for i, width in enumerate(widths):
        if i == 0 or width != widths[i - 1]:
            stage += 1
        stages.append(stage)
    return stages


def apply_output_stride(
    specs: list[BlockSpec], output_stride: int, input_reduction: int, dilate_first: bool = False
) -> list[BlockSpec]:
    """Replace the strides that would take the network past ``output_stride`` by dilation.

    ``input_reduction`` is the stem's. DeepLab and timm keep the previous dilation on the block
    whose stride is removed and dilate the blocks after it; ``dilate_first`` dilates that block
    too, as torchvision's dilated MobileNetV3 does.
    """
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    out, reduction, dilation = [], input_reduction, 1
    for spec in specs:
        if spec.stride > 1 and reduction * spec.stride > output_stride:
            next_dilation = dilation * spec.stride
            out.append(spec.replace(stride=1, dilation=next_dilation if dilate_first else dilation))
            dilation = next_dilation
        else:
            reduction *= spec.stride
            out.append(spec.replace(dilation=dilation) if dilation > 1 else spec)
    return out


def build_block(spec: BlockSpec, norm: NormConfig, padding: str) -> nn.Module:
    """The one place a spec becomes a module."""
    if spec.kind == "ds":
        return DepthwiseSeparable(spec.in_chs, spec.out_chs, spec.stride, spec.act, norm, padding, spec.dilation)
    if spec.kind == "conv":
        return ConvNormAct(
            spec.in_chs, spec.out_chs, spec.kernel, spec.stride, act=spec.act, norm=norm, padding=padding,
            dilation=spec.dilation,
        )  # fmt: skip
    if spec.kind == "ir":
        return InvertedResidual(
            spec.in_chs, spec.exp_chs, spec.out_chs, spec.kernel, spec.stride, spec.act, spec.se_chs, norm, padding,
            dilation=spec.dilation,
        )  # fmt: skip
    return ShuffleUnit(
        spec.in_chs, spec.out_chs, spec.exp_chs, spec.groups, spec.stride, spec.first_groups, spec.shuffle, norm,
        padding, spec.shuffle_order, dilation=spec.dilation,
    )  # fmt: skip


def min_input_size(stem_stride: int) -> int:
    """The smallest input the paper's 32x downsampling takes; the opt-in stride-1 stem halves it."""
    return 16 if stem_stride == 1 else 32


def optional_options(values: dict, defaults: dict) -> dict:
    """The options that differ from their defaults: configs of the paper's networks stay as they were."""
    return {k: v for k, v in values.items() if v != defaults[k]}
