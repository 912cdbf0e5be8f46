"""MobileNetV3-Large and -Small (Howard et al. 2019, arXiv:1905.02244), P-V3 Tables 1-2.

Published at 224x224, alpha 1.0: Large 219M MAdds / 5.4M params, Small 66M / 2.9M
(P-V3 Table 3; see the errata with the registrations below).

Width multiplier as TF-slim, Keras and timm apply it (the rule behind the
paper's 4.0M for Large 0.75): scale each block's input and output, keep the
expansion *ratio* of the table, keep the 1280/1024 pre-logits width for alpha <= 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..layers import ACTIVATIONS, ConvNormAct, InvertedResidual, NormConfig, make_divisible
from ..registry import Published, register
from .net import MobileNet, _check_stem_stride, check_common, check_width


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
) -> MobileNet:
    """MobileNetV3-Large or -Small; ``minimal`` builds the minimalistic variant.

    ``num_features`` overrides the pre-logits width (1280 Large, 1024 Small).
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
    stem_chs = make_divisible(STEM * width_mult)
    stem = ConvNormAct(in_chans, stem_chs, 3, stem_stride, act=hswish, norm=norm, padding=padding)

    in_chs, paper_in = stem_chs, STEM
    stages, strides = [], []
    for row in table:
        out = make_divisible(row.out * width_mult)
        # Expansion ratio of the table applied to the scaled input (TF/Keras/timm).
        exp = in_chs if row.exp == paper_in else make_divisible(in_chs * row.exp / paper_in)
        se = make_divisible(exp / 4) if row.se else 0
        if not stages or row.out != paper_in:  # a stage is a run of rows with one output width
            stages.append([])
            strides.append(row.stride)
        stages[-1].append(InvertedResidual(in_chs, exp, out, row.kernel, row.stride, row.act, se, norm, padding))
        in_chs, paper_in = out, row.out
    channels = [stage[-1].project.conv.out_channels for stage in stages]
    head_chs = make_divisible(head_width * width_mult)
    head = ConvNormAct(in_chs, head_chs, 1, act=hswish, norm=norm)
    if num_features is None:
        num_features = make_divisible(features * width_mult) if width_mult > 1.0 else features
    options = dict(
        size=size, width_mult=width_mult, minimal=minimal, num_features=num_features, num_classes=num_classes,
        in_chans=in_chans, drop_rate=drop_rate, bn_eps=bn_eps, bn_momentum=bn_momentum, padding=padding,
    )  # fmt: skip
    if stem_stride != 2:  # opt-in small-input adaptation; absent from configs of the paper's network
        options["stem_stride"] = stem_stride
    return MobileNet(
        stem=stem,
        stages=stages,
        stage_strides=strides,
        stem_stride=stem_stride,
        stage_channels=channels,
        head=head,
        head_channels=head_chs,
        num_classes=num_classes,
        in_chans=in_chans,
        drop_rate=drop_rate,
        pre_logits_channels=num_features,
        pre_logits_act=hswish,
        family="mobilenet_v3",
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
