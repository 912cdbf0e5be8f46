"""MobileNetV1 (Howard et al. 2017, arXiv:1704.04861), P-V1 Table 1.

Published at 224x224, alpha 1.0: 569M MAdds, 4.2M params (P-V1 Table 6).
Two deliberate departures from the table, as in every public implementation
(TF-slim, Keras, timm): ReLU6 instead of ReLU, and the 13th depthwise conv has
stride 1 (the table's stride 2 would not give its own 7x7 input to the pool).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..layers import ConvNormAct, NormConfig
from ..registry import Published, register
from .net import Network, _check_stem_stride, check_common, check_width
from .spec import BlockSpec, group_stages, min_input_size, optional_options


@dataclass(frozen=True)
class DW:
    """A depthwise separable row of P-V1 Table 1: dw 3x3 (stride) then pw 1x1 (out)."""

    out: int
    stride: int = 1

    def __post_init__(self):
        if self.stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {self.stride}")


STEM = 32  # Conv / s2, 3x3x3x32
MOBILENET_V1 = [
    # 112x112 in
    DW(out=64),
    DW(out=128, stride=2),
    # 56x56 in
    DW(out=128),
    DW(out=256, stride=2),
    # 28x28 in
    DW(out=256),
    DW(out=512, stride=2),
    # 14x14 in
    DW(out=512),
    DW(out=512),
    DW(out=512),
    DW(out=512),
    DW(out=512),
    DW(out=1024, stride=2),
    # 7x7 in (the paper prints stride 2 here; all code uses 1)
    DW(out=1024),
]


def scale_v1(channels: int, width_mult: float) -> int:
    """TF-slim's V1 rule: truncate, at least 8 (no rounding to multiples of 8)."""
    return max(int(channels * width_mult), 8)


def resolve_v1(width_mult: float, full_conv: bool, stem_chs: int) -> list[BlockSpec]:
    """P-V1 Table 1 at width ``width_mult`` as block specs (``full_conv``: P-V1 Table 4's 3x3 convs)."""
    outs = [scale_v1(row.out, width_mult) for row in MOBILENET_V1]
    specs, in_chs = [], stem_chs
    for row, out, stage in zip(MOBILENET_V1, outs, group_stages(outs), strict=True):
        kind = "conv" if full_conv else "ds"
        specs.append(BlockSpec(kind=kind, in_chs=in_chs, out_chs=out, stage=stage, stride=row.stride, act="relu6"))
        in_chs = out
    return specs


def mobilenet_v1(
    width_mult: float = 1.0,
    full_conv: bool = False,
    num_classes: int = 1000,
    in_chans: int = 3,
    drop_rate: float = 0.0,
    bn_eps: float = 1e-5,
    bn_momentum: float = 0.1,
    padding: str = "symmetric",
    head_chs: int = 0,
    stem_stride: int = 2,
    output_stride: int = 32,
    stem_chs: int | None = None,
    blocks: list[dict] | None = None,
) -> Network:
    """MobileNetV1 with width multiplier alpha; ``full_conv`` builds P-V1 Table 4's Conv MobileNet.

    The resolution multiplier is the input size: the network takes any size >= 32.
    ``head_chs`` > 0 adds a 1x1 conv + BN + ReLU6 of that width before pooling (timm's
    ``mobilenetv1_100h``); the paper has none. ``output_stride`` 16 or 8 dilates the later
    layers. ``stem_chs`` and ``blocks`` (spec dicts, see ``models/spec.py``) replace the
    table's widths (NetAdapt writes them).
    """
    check_width(width_mult, paper="0.25 to 1.0")
    check_common(num_classes, in_chans, drop_rate)
    _check_stem_stride(stem_stride)
    norm = NormConfig(bn_eps, bn_momentum)
    stem_chs = stem_chs or scale_v1(STEM, width_mult)
    stem = ConvNormAct(in_chans, stem_chs, 3, stem_stride, act="relu6", norm=norm, padding=padding)
    specs = [BlockSpec.from_dict(b) for b in blocks] if blocks else resolve_v1(width_mult, full_conv, stem_chs)
    options = dict(
        width_mult=width_mult, full_conv=full_conv, num_classes=num_classes, in_chans=in_chans,
        drop_rate=drop_rate, bn_eps=bn_eps, bn_momentum=bn_momentum, padding=padding,
    )  # fmt: skip
    # Options beyond the paper's network are recorded only when used, so its configs stay as they were.
    options.update(optional_options(
        dict(head_chs=head_chs, stem_stride=stem_stride, output_stride=output_stride, stem_chs=stem_chs, blocks=blocks),
        dict(head_chs=0, stem_stride=2, output_stride=32, stem_chs=scale_v1(STEM, width_mult), blocks=None),
    ))  # fmt: skip
    return Network(
        family="mobilenet_v1",
        stem=stem,
        stem_reduction=stem_stride,
        blocks=specs,
        output_stride=output_stride,
        norm=norm,
        padding=padding,
        num_classes=num_classes,
        in_chans=in_chans,
        drop_rate=drop_rate,
        final_conv_chs=head_chs,
        final_conv_act="relu6",
        min_input_size=min_input_size(stem_stride),
        options=options,
    )


# Published figures. TF-slim's README (research/slim/nets/mobilenet_v1.md) counts
# 1001 classes; its 0.75 MAdds row disagrees with TF-slim's own code.
_TF_075_ERRATUM = (
    "TF-slim README's 0.75 MAdds disagree with its own code (docstring: 106,002,432 MACs "
    "at 128 without logits); checked against the count of the network its code builds"
)
_V1_PUBLISHED = {
    1.0: [
        Published("P-V1 Table 6", params="4.2M", madds="569M", top1=70.6),
        Published("P-V1 Table 7", params="4.2M", madds="418M", resolution=192, top1=69.1),
        Published("P-V1 Table 7", params="4.2M", madds="290M", resolution=160, top1=67.2),
        Published("P-V1 Table 7", params="4.2M", madds="186M", resolution=128, top1=64.4),
        Published("TF-slim README", params="4.24M", madds="569M", top1=70.9, num_classes=1001),
        Published("TF-slim README", params="4.24M", madds="418M", resolution=192, top1=70.0, num_classes=1001),
        Published("TF-slim README", params="4.24M", madds="291M", resolution=160, top1=68.0, num_classes=1001),
        Published("TF-slim README", params="4.24M", madds="186M", resolution=128, top1=65.2, num_classes=1001),
        Published("TF-slim mobilenet_v1.py docstring", madds="567,716,352", count_classifier=False),
        Published("P-V2 Table 4", params="4.2M", madds="575M", top1=70.6, tolerance=0.012),
    ],
    0.75: [
        Published("P-V1 Table 6", params="2.6M", madds="325M", top1=68.4),
        Published(
            "TF-slim README",
            params="2.59M",
            madds="317M",
            top1=68.4,
            num_classes=1001,
            erratum=_TF_075_ERRATUM,
            corrected_params="2.59M",
            corrected_madds="325.4M",
        ),
        Published(
            "TF-slim README",
            params="2.59M",
            madds="233M",
            resolution=192,
            top1=67.2,
            num_classes=1001,
            erratum=_TF_075_ERRATUM,
            corrected_params="2.59M",
            corrected_madds="239.3M",
        ),
        Published(
            "TF-slim README",
            params="2.59M",
            madds="162M",
            resolution=160,
            top1=65.3,
            num_classes=1001,
            erratum=_TF_075_ERRATUM,
            corrected_params="2.59M",
            corrected_madds="166.4M",
        ),
        Published(
            "TF-slim README",
            params="2.59M",
            madds="104M",
            resolution=128,
            top1=62.1,
            num_classes=1001,
            erratum=_TF_075_ERRATUM,
            corrected_params="2.59M",
            corrected_madds="106.8M",
        ),
        Published("TF-slim mobilenet_v1.py docstring", madds="106,002,432", resolution=128, count_classifier=False),
    ],
    0.5: [
        Published("P-V1 Table 6", params="1.3M", madds="149M", top1=63.7),
        Published("P-V1 Table 9", params="1.32M", madds="76M", resolution=160, top1=60.2),
        Published("TF-slim README", params="1.34M", madds="150M", top1=63.3, num_classes=1001),
        Published("TF-slim README", params="1.34M", madds="110M", resolution=192, top1=61.7, num_classes=1001),
        Published("TF-slim README", params="1.34M", madds="77M", resolution=160, top1=59.1, num_classes=1001),
        Published("TF-slim README", params="1.34M", madds="49M", resolution=128, top1=56.3, num_classes=1001),
    ],
    0.25: [
        Published("P-V1 Table 6", params="0.5M", madds="41M", top1=50.6),
        Published("TF-slim README", params="0.47M", madds="41M", top1=49.8, num_classes=1001),
        Published(
            "TF-slim README",
            params="0.47M",
            madds="34M",
            resolution=192,
            top1=47.7,
            num_classes=1001,
            erratum="TF-slim README prints 34M for 0.25@192, between its 41M@224 and 21M@160; "
            "MAdds scale with pixels (41M x (192/224)^2 = 30M)",
            corrected_params="0.47M",
            corrected_madds="30.2M",
        ),
        Published("TF-slim README", params="0.47M", madds="21M", resolution=160, top1=45.5, num_classes=1001),
        Published("TF-slim README", params="0.47M", madds="14M", resolution=128, top1=41.5, num_classes=1001),
    ],
}

for _alpha, _published in _V1_PUBLISHED.items():
    register(
        f"mobilenet_v1_{round(_alpha * 100):03d}",
        mobilenet_v1,
        {"width_mult": _alpha},
        _published,
        f"MobileNetV1, alpha {_alpha}",
    )
register(
    "mobilenet_v1_conv_100",
    mobilenet_v1,
    {"full_conv": True},
    [Published("P-V1 Table 4", params="29.3M", madds="4866M", top1=71.7)],
    "P-V1 Table 4 baseline: MobileNetV1 with full 3x3 convs instead of depthwise separable ones",
)
