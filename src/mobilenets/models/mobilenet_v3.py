"""MobileNetV3-Large and -Small (Howard et al. 2019, arXiv:1905.02244), P-V3 Tables 1-2.

Published at 224x224, alpha 1.0: Large 219M MAdds / 5.4M params, Small 66M / 2.9M
(P-V3 Table 3; see the errata with the registrations below).

Width multiplier as TF-slim, Keras and timm apply it (the rule behind the
paper's 4.0M for Large 0.75): scale each block's input and output, keep the
expansion *ratio* of the table, keep the 1280/1024 pre-logits width for alpha <= 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..layers import ACTIVATIONS, ConvNormAct, NormConfig, make_divisible
from ..registry import Published, register
from .net import Network, _check_stem_stride, check_common, check_width
from .spec import BlockSpec, group_stages, min_input_size, optional_options


@dataclass(frozen=True)
class IR:
    """A bneck row of P-V3 Tables 1-2: kernel, expansion size, outputs, SE, nonlinearity, stride."""

    kernel: int
    exp: int
    out: int
    se: bool
    act: str
    stride: int

    def __post_init__(self):
        if self.kernel not in (3, 5):
            raise ValueError(f"kernel must be 3 or 5, got {self.kernel}")
        if self.act not in ACTIVATIONS:
            raise ValueError(f"act must be one of {ACTIVATIONS}, got {self.act!r}")
        if self.stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {self.stride}")


STEM = 16  # conv2d 3x3, stride 2, h-swish
MOBILENET_V3_LARGE = [
    IR(kernel=3, exp=16, out=16, se=False, act="relu", stride=1),  # 112x112 in
    IR(kernel=3, exp=64, out=24, se=False, act="relu", stride=2),
    IR(kernel=3, exp=72, out=24, se=False, act="relu", stride=1),  # 56x56 in
    IR(kernel=5, exp=72, out=40, se=True, act="relu", stride=2),
    IR(kernel=5, exp=120, out=40, se=True, act="relu", stride=1),  # 28x28 in
    IR(kernel=5, exp=120, out=40, se=True, act="relu", stride=1),
    IR(kernel=3, exp=240, out=80, se=False, act="hswish", stride=2),
    IR(kernel=3, exp=200, out=80, se=False, act="hswish", stride=1),  # 14x14 in, h-swish from here
    IR(kernel=3, exp=184, out=80, se=False, act="hswish", stride=1),
    IR(kernel=3, exp=184, out=80, se=False, act="hswish", stride=1),
    IR(kernel=3, exp=480, out=112, se=True, act="hswish", stride=1),
    IR(kernel=3, exp=672, out=112, se=True, act="hswish", stride=1),
    IR(kernel=5, exp=672, out=160, se=True, act="hswish", stride=2),  # SSDLite taps this expansion
    IR(kernel=5, exp=960, out=160, se=True, act="hswish", stride=1),  # 7x7 in
    IR(kernel=5, exp=960, out=160, se=True, act="hswish", stride=1),
]
LARGE_HEAD, LARGE_FEATURES = 960, 1280  # conv2d 1x1 + BN + HS; pool; conv2d 1x1 NBN + HS

MOBILENET_V3_SMALL = [
    IR(kernel=3, exp=16, out=16, se=True, act="relu", stride=2),  # 112x112 in
    IR(kernel=3, exp=72, out=24, se=False, act="relu", stride=2),  # 56x56 in
    IR(kernel=3, exp=88, out=24, se=False, act="relu", stride=1),  # 28x28 in
    IR(kernel=5, exp=96, out=40, se=True, act="hswish", stride=2),
    IR(kernel=5, exp=240, out=40, se=True, act="hswish", stride=1),  # 14x14 in, h-swish from here
    IR(kernel=5, exp=240, out=40, se=True, act="hswish", stride=1),
    IR(kernel=5, exp=120, out=48, se=True, act="hswish", stride=1),
    IR(kernel=5, exp=144, out=48, se=True, act="hswish", stride=1),
    IR(kernel=5, exp=288, out=96, se=True, act="hswish", stride=2),
    IR(kernel=5, exp=576, out=96, se=True, act="hswish", stride=1),  # 7x7 in
    IR(kernel=5, exp=576, out=96, se=True, act="hswish", stride=1),
]
# Table 2 marks SE on the 576 conv and prints 1280 for the pre-logits; every
# released checkpoint (TF, Keras, timm, torchvision) has no SE there and 1024.
SMALL_HEAD, SMALL_FEATURES = 576, 1024

TABLES = {
    "large": (MOBILENET_V3_LARGE, LARGE_HEAD, LARGE_FEATURES),
    "small": (MOBILENET_V3_SMALL, SMALL_HEAD, SMALL_FEATURES),
}


def _minimal(row: IR) -> IR:
    """TF's minimalistic variant: 3x3 kernels, no SE, ReLU everywhere."""
    return IR(kernel=3, exp=row.exp, out=row.out, se=False, act="relu", stride=row.stride)


def resolve_v3(table: list[IR], width_mult: float, stem_chs: int, reduced_tail: bool = False) -> list[BlockSpec]:
    """A P-V3 table at width ``width_mult`` as block specs; a stage is a run of rows with one output width.

    ``reduced_tail`` halves the blocks after the C4 tap (the last stride-2 row's expansion stays),
    P-V3 Sec 6.3 / Table 6's "+" and Table 7's "RF2".
    """
    last_stride2 = max(i for i, row in enumerate(table) if row.stride == 2)
    specs, in_chs, paper_in = [], stem_chs, STEM
    outs = [make_divisible(row.out * width_mult) for row in table]
    for i, row in enumerate(table):
        out = outs[i] // 2 if reduced_tail and i >= last_stride2 else outs[i]
        # Expansion ratio of the table applied to the scaled input (TF/Keras/timm).
        exp = in_chs if row.exp == paper_in else make_divisible(in_chs * row.exp / paper_in)
        se = make_divisible(exp / 4) if row.se else 0
        specs.append(BlockSpec(kind="ir", in_chs=in_chs, exp_chs=exp, out_chs=out, stage=0, kernel=row.kernel,
                               stride=row.stride, se_chs=se, act=row.act))  # fmt: skip
        in_chs, paper_in = out, row.out
    stages = group_stages([row.out for row in table])
    return [spec.replace(stage=stage) for spec, stage in zip(specs, stages, strict=True)]


def mobilenet_v3(
    size: str = "large",
    width_mult: float = 1.0,
    minimal: bool = False,
    num_features: int | None = None,
    num_classes: int = 1000,
    in_chans: int = 3,
    drop_rate: float = 0.2,
    bn_eps: float = 1e-5,
    bn_momentum: float = 0.1,
    padding: str = "symmetric",
    stem_stride: int = 2,
    output_stride: int = 32,
    reduced_tail: bool = False,
    dilate_first: bool = False,
    stem_chs: int | None = None,
    blocks: list[dict] | None = None,
    head_chs: int | None = None,
) -> Network:
    """MobileNetV3-Large or -Small; ``minimal`` builds the minimalistic variant.

    ``num_features`` overrides the pre-logits width (1280 Large, 1024 Small). ``output_stride``
    16 or 8 dilates the later layers; ``dilate_first`` dilates the block whose stride is removed
    too (torchvision's convention; DeepLab's is the default). ``reduced_tail`` halves the channels
    between C4 and C5 (and the final conv and pre-logits, as torchvision does). ``stem_chs``,
    ``blocks`` (spec dicts, see ``models/spec.py``) and ``head_chs`` replace the table's widths.
    """
    if size not in TABLES:
        raise ValueError(f"size must be one of {sorted(TABLES)}, got {size!r}")
    check_width(width_mult, paper="0.35 to 1.25")
    check_common(num_classes, in_chans, drop_rate)
    table, head_width, features = TABLES[size]
    if minimal:
        table = [_minimal(row) for row in table]
    _check_stem_stride(stem_stride)
    norm = NormConfig(bn_eps, bn_momentum)
    hswish = "relu" if minimal else "hswish"
    divider = 2 if reduced_tail else 1
    table_stem = make_divisible(STEM * width_mult)
    table_head = make_divisible(head_width * width_mult) // divider
    stem_chs, head_chs = stem_chs or table_stem, head_chs or table_head
    stem = ConvNormAct(in_chans, stem_chs, 3, stem_stride, act=hswish, norm=norm, padding=padding)
    if blocks:
        specs = [BlockSpec.from_dict(b) for b in blocks]
    else:
        specs = resolve_v3(table, width_mult, stem_chs, reduced_tail)
    table_features = (make_divisible(features * width_mult) if width_mult > 1.0 else features) // divider
    options = dict(
        size=size, width_mult=width_mult, minimal=minimal, num_features=num_features or table_features,
        num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, bn_eps=bn_eps, bn_momentum=bn_momentum,
        padding=padding,
    )  # fmt: skip
    options.update(optional_options(
        dict(stem_stride=stem_stride, output_stride=output_stride, reduced_tail=reduced_tail, dilate_first=dilate_first,
             stem_chs=stem_chs, blocks=blocks, head_chs=head_chs),
        dict(stem_stride=2, output_stride=32, reduced_tail=False, dilate_first=False, stem_chs=table_stem, blocks=None,
             head_chs=table_head),
    ))  # fmt: skip
    return Network(
        family="mobilenet_v3",
        stem=stem,
        stem_reduction=stem_stride,
        blocks=specs,
        output_stride=output_stride,
        dilate_first=dilate_first,
        norm=norm,
        padding=padding,
        num_classes=num_classes,
        in_chans=in_chans,
        drop_rate=drop_rate,
        final_conv_chs=head_chs,
        final_conv_act=hswish,
        pre_logits_channels=options["num_features"],
        pre_logits_act=hswish,
        min_input_size=min_input_size(stem_stride),
        options=options,
    )


# P-V3 Table 3 vs the TF-slim README (research/slim/nets/mobilenet/README.md),
# torchvision's weight metadata and timm's model cards.
_PAPER_HEAD = {"num_features": 1280}  # the Small pre-logits width printed in P-V3 Table 2
_SMALL_MADDS_ERRATUM = (
    "66M MAdds for V3-Small 1.0 is reproduced by no head width (56.5M with 1024, 56.9M with 1280); "
    "checked against torchvision's 0.057 GFLOPS for the same network instead"
)
_VARIANTS = {
    "mobilenet_v3_large_100": (dict(size="large"), [
        Published("P-V3 Table 3", params="5.4M", madds="219M", top1=75.2,
                  erratum="P-V3 Table 3 prints 219M; the TF-slim README and torchvision give 217M for the same network",
                  corrected_params="5,483,032", corrected_madds="217M"),
        Published("TF-slim README (truncated: 5.48M printed as 5.4M)", params="5.4M", madds="217M", top1=75.2,
                  truncated=True),
        Published("torchvision MobileNet_V3_Large_Weights", params="5,483,032", madds="217M", top1=75.274),
    ]),
    "mobilenet_v3_large_075": (dict(size="large", width_mult=0.75), [
        Published("P-V3 Table 3", params="4.0M", madds="155M", top1=73.3),
        Published("TF-slim README", params="4.0M", madds="155M", top1=73.3),
        Published("timm tf_mobilenetv3_large_075", params="3.99M", top1=73.45),
    ]),
    "mobilenet_v3_small_100": (dict(size="small"), [
        Published("P-V3 Table 3 (params, with Table 2's 1280-wide pre-logits)", params="2.9M", options=_PAPER_HEAD),
        Published("P-V3 Table 3", params="2.9M", madds="66M", top1=67.4,
                  erratum="P-V3 Tables 2-3 count a 1280-wide pre-logits layer that no release has (1024); "
                  + _SMALL_MADDS_ERRATUM, corrected_params="2,542,856", corrected_madds="57M"),
        Published("TF-slim README", params="2.9M", madds="66M", top1=67.5, erratum=_SMALL_MADDS_ERRATUM,
                  corrected_params="2.54M", corrected_madds="57M"),
        Published("torchvision MobileNet_V3_Small_Weights", params="2,542,856", madds="57M", top1=67.668),
    ]),
    "mobilenet_v3_small_075": (dict(size="small", width_mult=0.75), [
        Published("P-V3 Table 3 (with Table 2's 1280-wide pre-logits)", params="2.4M", madds="44M", top1=65.4,
                  options=_PAPER_HEAD),
        Published("TF-slim README", params="2.4M", madds="44M", top1=65.4, options=_PAPER_HEAD),
        Published("timm tf_mobilenetv3_small_075", params="2.04M", top1=65.72),
    ]),
    "mobilenet_v3_large_minimal_100": (dict(size="large", minimal=True), [
        Published("TF-slim README", params="3.9M", madds="209M", top1=72.3),
        Published("timm tf_mobilenetv3_large_minimal_100", params="3.92M", top1=72.24),
    ]),
    "mobilenet_v3_small_minimal_100": (dict(size="small", minimal=True), [
        Published("TF-slim README", params="2.0M", madds="65M", top1=61.9,
                  erratum="65M MAdds for Small minimalistic is reproduced by no head width (52.3M with 1024)",
                  corrected_params="2.04M", corrected_madds="52.3M"),
        Published("timm tf_mobilenetv3_small_minimal_100", params="2.04M", top1=62.91),
    ]),
}  # fmt: skip

for _name, (_fixed, _published) in _VARIANTS.items():
    register(_name, mobilenet_v3, _fixed, _published, _name.replace("_", " "))
