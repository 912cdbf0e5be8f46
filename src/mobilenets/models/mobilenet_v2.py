"""MobileNetV2 (Sandler et al. 2018, arXiv:1801.04381), P-V2 Table 2.

Published at 224x224, alpha 1.0: 300M MAdds, 3.4M params (P-V2 Table 4).
The t=1 block has no expansion conv; the final 1280 conv is not scaled below
alpha 1 (P-V2 Sec 6.1, as in TF-slim, Keras, timm and torchvision).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..layers import ConvNormAct, NormConfig, make_divisible
from ..registry import Published, register
from .net import Network, _check_stem_stride, check_common, check_width
from .spec import BlockSpec, min_input_size, optional_options


@dataclass(frozen=True)
class Bottleneck:
    """A row of P-V2 Table 2: n bottlenecks with expansion t and c outputs, the first with stride s."""

    t: int
    c: int
    n: int
    s: int

    def __post_init__(self):
        if self.t < 1 or self.n < 1 or self.s not in (1, 2):
            raise ValueError(f"invalid bottleneck row {self}: need t >= 1, n >= 1, s in (1, 2)")


STEM = 32  # conv2d 3x3, stride 2
MOBILENET_V2 = [
    Bottleneck(t=1, c=16, n=1, s=1),  # 112x112 in
    Bottleneck(t=6, c=24, n=2, s=2),  # 112x112 in
    Bottleneck(t=6, c=32, n=3, s=2),  # 56x56 in
    Bottleneck(t=6, c=64, n=4, s=2),  # 28x28 in
    Bottleneck(t=6, c=96, n=3, s=1),  # 14x14 in
    Bottleneck(t=6, c=160, n=3, s=2),  # 14x14 in
    Bottleneck(t=6, c=320, n=1, s=1),  # 7x7 in
]
HEAD = 1280  # conv2d 1x1, then avgpool and the classifier


def resolve_v2(width_mult: float, stem_chs: int) -> list[BlockSpec]:
    """P-V2 Table 2 at width ``width_mult`` as block specs, one per bottleneck (a stage per table row)."""
    specs, in_chs = [], stem_chs
    for stage, row in enumerate(MOBILENET_V2):
        out = make_divisible(row.c * width_mult)
        for i in range(row.n):
            exp = make_divisible(in_chs * row.t) if row.t > 1 else in_chs
            specs.append(BlockSpec(kind="ir", in_chs=in_chs, exp_chs=exp, out_chs=out, stage=stage,
                                   stride=row.s if i == 0 else 1, act="relu6"))  # fmt: skip
            in_chs = out
    return specs


def mobilenet_v2(
    width_mult: float = 1.0,
    num_classes: int = 1000,
    in_chans: int = 3,
    drop_rate: float = 0.2,
    bn_eps: float = 1e-5,
    bn_momentum: float = 0.1,
    padding: str = "symmetric",
    stem_stride: int = 2,
    output_stride: int = 32,
    stem_chs: int | None = None,
    blocks: list[dict] | None = None,
    head_chs: int | None = None,
) -> Network:
    """MobileNetV2 with width multiplier alpha (channels rounded to multiples of 8).

    ``output_stride`` 16 or 8 dilates the later layers (DeepLab); ``stem_chs``, ``blocks`` (spec
    dicts, see ``models/spec.py``) and ``head_chs`` (the last 1x1 conv) replace the table's widths.
    """
    check_width(width_mult, paper="0.35 to 1.4")
    check_common(num_classes, in_chans, drop_rate)
    _check_stem_stride(stem_stride)
    norm = NormConfig(bn_eps, bn_momentum)
    table_stem, table_head = make_divisible(STEM * width_mult), make_divisible(HEAD * max(1.0, width_mult))
    stem_chs, head_chs = stem_chs or table_stem, head_chs or table_head
    stem = ConvNormAct(in_chans, stem_chs, 3, stem_stride, act="relu6", norm=norm, padding=padding)
    specs = [BlockSpec.from_dict(b) for b in blocks] if blocks else resolve_v2(width_mult, stem_chs)
    options = dict(
        width_mult=width_mult, num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
        bn_eps=bn_eps, bn_momentum=bn_momentum, padding=padding,
    )  # fmt: skip
    options.update(optional_options(
        dict(stem_stride=stem_stride, output_stride=output_stride, stem_chs=stem_chs, blocks=blocks, head_chs=head_chs),
        dict(stem_stride=2, output_stride=32, stem_chs=table_stem, blocks=None, head_chs=table_head),
    ))  # fmt: skip
    return Network(
        family="mobilenet_v2",
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


# TF-slim's README (research/slim/nets/mobilenet/README.md) counts weights without
# BN and 1001 classes, and truncates (300.8M MACs printed as 300); "(MACs, top-1)"
# per resolution. P-V2 Table 4 and P-V3 Table 3 count and truncate the same way.
_TF_README = {
    1.4: ("6.06M", {224: ("582M", 75.0)}),
    1.3: ("5.34M", {224: ("509M", 74.4)}),
    1.0: (
        "3.47M",
        {224: ("300M", 71.8), 192: ("221M", 70.7), 160: ("154M", 68.8), 128: ("99M", 65.3), 96: ("56M", 60.3)},
    ),
    0.75: (
        "2.61M",
        {224: ("209M", 69.8), 192: ("153M", 68.7), 160: ("107M", 66.4), 128: ("69M", 63.2), 96: ("39M", 58.8)},
    ),
    0.5: ("1.95M", {224: ("97M", 65.4), 192: ("71M", 63.9), 160: ("50M", 61.0), 128: ("32M", 57.7), 96: ("18M", 51.2)}),
    0.35: (
        "1.66M",
        {224: ("59M", 60.3), 192: ("43M", 58.2), 160: ("30M", 55.7), 128: ("20M", 50.8), 96: ("11M", 45.5)},
    ),
}
_TF_COUNT = dict(num_classes=1001, count_bn=False, truncated=True)
_PAPER = {
    1.0: [
        Published("P-V2 Table 4", params="3.4M", madds="300M", top1=72.0, **_TF_COUNT),
        Published("P-V3 Table 3", params="3.4M", madds="300M", top1=72.0, **_TF_COUNT),
        Published("torchvision MobileNet_V2_Weights", params="3,504,872", madds="301M", top1=71.878),
    ],
    1.4: [
        Published(
            "P-V2 Table 4",
            params="6.9M",
            madds="585M",
            top1=74.7,
            **_TF_COUNT,
            erratum="P-V2 Table 4 prints 6.9M params for alpha 1.4; the TF-slim README lists 6.06M "
            "for the released checkpoint (and 582M MACs)",
            corrected_params="6.06M",
            corrected_madds="582M",
        ),
    ],
    0.35: [Published("P-V3 Table 3", params="1.6M", madds="59.2M", top1=60.8, **_TF_COUNT)],
}

for _alpha, (_params, _rows) in _TF_README.items():
    _published = list(_PAPER.get(_alpha, []))
    for _res, (_madds, _top1) in _rows.items():
        _published.append(
            Published("TF-slim README", params=_params, madds=_madds, resolution=_res, top1=_top1,
                      **_TF_COUNT)
        )  # fmt: skip
    register(f"mobilenet_v2_{round(_alpha * 100):03d}", mobilenet_v2, {"width_mult": _alpha}, _published,
             f"MobileNetV2, alpha {_alpha}")  # fmt: skip
