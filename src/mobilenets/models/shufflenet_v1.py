"""ShuffleNet V1 (Zhang et al. 2017, arXiv:1707.01083), P-SN Table 1 and Sec 3.2-3.3.

Published at 224x224, 1x: 143/140/137/133/137 MFLOPs for g = 1/2/3/4/8 (P-SN Table 1).

Channel rounding for scale factors (documented departure): a unit's bottleneck is
out/4 and its grouped convs need channels divisible by g, so each stage width
``c * s`` is rounded to the nearest multiple of 4g, and the stem to a multiple of g
(the stride-2 unit's branch outputs ``out - in`` channels). At the paper's
widths this changes nothing; 0.5x g=8 gets megvii's 16-channel stem.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..layers import ConvNormAct, NormConfig
from ..registry import Published, register
from .net import Network, check_common, check_width
from .spec import BlockSpec

GROUPS = (1, 2, 3, 4, 8)
SCALES = (0.25, 0.5, 1.0, 1.5, 2.0)


@dataclass(frozen=True)
class Stage:
    """A stage of P-SN Table 1: one stride-2 unit, then ``repeat`` stride-1 units."""

    repeat: int
    widths: dict  # output channels per number of groups g, at 1x


STEM = 24  # Conv1 3x3 / s2, then MaxPool 3x3 / s2
SHUFFLENET_V1 = [
    Stage(repeat=3, widths={1: 144, 2: 200, 3: 240, 4: 272, 8: 384}),  # Stage2, 28x28 out
    Stage(repeat=7, widths={1: 288, 2: 400, 3: 480, 4: 544, 8: 768}),  # Stage3, 14x14 out
    Stage(repeat=3, widths={1: 576, 2: 800, 3: 960, 4: 1088, 8: 1536}),  # Stage4, 7x7 out
]
# The paper gives no stem width for scaled models. These are megvii's released
# stems (12 at 0.5x, 24 at 1.5x, 48 at 2x), which the paper's 38M, 292M and 524M
# MFLOPs reproduce; 0.25x keeps 12. Other scales use 24*s. The stem is then rounded
# to a multiple of g, except where a pair below is given: megvii's 16 for 0.5x g=8,
# and 8 for 0.25x g=8 (16 would be a third of that network's MAdds, not the paper's 13M).
STEM_WIDTHS = {0.25: 12, 0.5: 12, 1.0: 24, 1.5: 24, 2.0: 48}
STEM_BY_GROUPS = {(8, 0.25): 8, (8, 0.5): 16}


def _round_to(value: float, multiple: int) -> int:
    return max(1, int(value / multiple + 0.5)) * multiple


def shufflenet_v1(
    groups: int = 3,
    scale: float = 1.0,
    shuffle: bool = True,
    num_classes: int = 1000,
    in_chans: int = 3,
    drop_rate: float = 0.0,
    bn_eps: float = 1e-5,
    bn_momentum: float = 0.1,
    padding: str = "symmetric",
    shuffle_order: str = "paper",
) -> Network:
    """ShuffleNet ``scale``x with ``groups`` groups; ``shuffle=False`` is P-SN Table 3's ablation.

    ``shuffle_order="megvii"`` uses the inverse permutation of megvii's released weights.
    """
    if groups not in GROUPS:
        raise ValueError(f"groups must be one of {GROUPS}, got {groups}")
    check_width(scale, name="scale", paper=", ".join(map(str, SCALES)))
    check_common(num_classes, in_chans, drop_rate)
    norm = NormConfig(bn_eps, bn_momentum)
    stem_chs = STEM_BY_GROUPS.get((groups, scale)) or _round_to(STEM_WIDTHS.get(scale, STEM * scale), groups)
    stem = nn.Sequential(
        ConvNormAct(in_chans, stem_chs, 3, 2, act="relu", norm=norm, padding=padding),
        nn.MaxPool2d(3, 2, 1),
    )
    specs = resolve_shufflenet(groups, scale, shuffle, shuffle_order, stem_chs)
    options = dict(
        groups=groups, scale=scale, shuffle=shuffle, num_classes=num_classes, in_chans=in_chans,
        drop_rate=drop_rate, bn_eps=bn_eps, bn_momentum=bn_momentum, padding=padding, shuffle_order=shuffle_order,
    )  # fmt: skip
    return Network(
        family="shufflenet_v1",
        stem=stem,
        stem_reduction=4,  # conv stride 2, then max-pool stride 2
        blocks=specs,
        norm=norm,
        padding=padding,
        num_classes=num_classes,
        in_chans=in_chans,
        drop_rate=drop_rate,
        options=options,
    )


def resolve_shufflenet(groups: int, scale: float, shuffle: bool, shuffle_order: str, stem_chs: int) -> list[BlockSpec]:
    """P-SN Table 1 as block specs: per stage one stride-2 unit, then ``repeat`` stride-1 units."""
    specs, in_chs = [], stem_chs
    for index, stage in enumerate(SHUFFLENET_V1):
        out = _round_to(stage.widths[groups] * scale, 4 * groups)
        for i in range(stage.repeat + 1):
            specs.append(BlockSpec(
                kind="shuffle", in_chs=in_chs, out_chs=out, exp_chs=out // 4, stage=index, stride=2 if i == 0 else 1,
                groups=groups,
                # Stage 2's first pointwise conv is dense: its input has few channels (P-SN Table 1).
                first_groups=1 if index == 0 and i == 0 else groups,
                shuffle=shuffle, shuffle_order=shuffle_order,
            ))  # fmt: skip
            in_chs = out
    return specs


def _name(groups: int, scale: float, shuffle: bool = True) -> str:
    return f"shufflenet_v1_g{groups}_{round(scale * 100):03d}" + ("" if shuffle else "_noshuffle")


# P-SN Tables 1, 2, 5, 8 and P-V2 Table 4 give MFLOPs (= MAdds); megvii's README
# (ShuffleNet-Series/ShuffleNetV1) gives FLOPs and params with a bias-free classifier
# and top-1 *error*. Tables 2, 5 and 8 label rows with a complexity level shared by
# every g (~140M, ~38M, ~13M): those figures are checked at 7% (0.5x g=8 is 40M
# in megvii's own table).
_NOMINAL = "the row's nominal complexity level"
_TABLE1 = {1: "143M", 2: "140M", 3: "137M", 4: "133M", 8: "137M"}
_TABLE2_ERR = {  # (scale, MFLOPs): error for g = 1, 2, 3, 4, 8
    (1.0, "140M"): (33.6, 32.7, 32.6, 32.8, 32.4),
    (0.5, "38M"): (45.1, 44.4, 43.2, 41.6, 42.3),
    (0.25, "13M"): (57.1, 56.8, 55.0, 54.2, 52.7),
}
_MEGVII = {  # (groups, scale): FLOPs, params, top-1 error
    (3, 2.0): ("524M", "5.4M", 25.9), (8, 2.0): ("522M", "6.5M", 27.1),
    (3, 1.5): ("292M", "3.4M", 28.4), (8, 1.5): ("290M", "4.3M", 29.0),
    (3, 1.0): ("138M", "1.9M", 32.2), (8, 1.0): ("138M", "2.4M", 32.0),
    (3, 0.5): ("38M", "0.7M", 42.7), (8, 0.5): ("40M", "1.0M", 41.2),
}  # fmt: skip
_OTHERS = {
    (3, 2.0): [Published("P-SN Table 5", madds="524M", top1=73.7), Published("P-SN Table 8", madds="524M", top1=73.7),
               Published("P-V2 Table 4 (ShuffleNet x2)", params="5.4M", madds="524M", top1=73.7,
                         classifier_bias=False)],
    (3, 1.5): [Published("P-SN Table 5", madds="292M", top1=71.5),
               Published("P-V2 Table 4 (ShuffleNet 1.5)", params="3.4M", madds="292M", top1=71.5,
                         classifier_bias=False)],
    (8, 1.0): [Published("P-SN Table 5", madds="140M", top1=67.6, tolerance=0.07, note=_NOMINAL)],
    (3, 1.0): [Published("P-SN Table 8", madds="140M", top1=67.4, tolerance=0.07, note=_NOMINAL)],
    (4, 0.5): [Published("P-SN Table 5", madds="38M", top1=58.4, tolerance=0.07, note=_NOMINAL)],
    (3, 0.5): [Published("P-SN Table 8", madds="38M", top1=56.8, tolerance=0.07, note=_NOMINAL)],
}  # fmt: skip
_NO_SHUFFLE_ERR = {(3, 1.0): 34.5, (8, 1.0): 37.6, (3, 0.5): 45.7, (8, 0.5): 48.1, (3, 0.25): 56.3, (8, 0.25): 56.5}

for _g in GROUPS:
    for _s in SCALES:
        _published = []
        if _s == 1.0:
            _published.append(
                Published(
                    "P-SN Table 1",
                    madds=_TABLE1[_g],
                    count_classifier=_g not in (4, 8),
                    note="g=4 and g=8 are reproduced without the FC layer, g=1 with it",
                )
            )
        for (_scale, _madds), _errors in _TABLE2_ERR.items():
            if _scale == _s:
                _published.append(
                    Published(
                        "P-SN Table 2",
                        madds=_madds,
                        top1=round(100 - _errors[GROUPS.index(_g)], 1),
                        tolerance=0.07,
                        note=_NOMINAL,
                    )
                )
        if (_g, _s) in _MEGVII:
            _flops, _params, _err = _MEGVII[_g, _s]
            _published.append(
                Published(
                    "megvii ShuffleNet-Series README",
                    params=_params,
                    madds=_flops,
                    top1=round(100 - _err, 1),
                    classifier_bias=False,
                )
            )
        _published += _OTHERS.get((_g, _s), [])
        register(_name(_g, _s), shufflenet_v1, {"groups": _g, "scale": _s}, _published, f"ShuffleNet {_s}x (g={_g})")
for (_g, _s), _err in _NO_SHUFFLE_ERR.items():
    register(_name(_g, _s, shuffle=False), shufflenet_v1, {"groups": _g, "scale": _s, "shuffle": False},
             [Published("P-SN Table 3", top1=round(100 - _err, 1))],
             f"ShuffleNet {_s}x (g={_g}) without channel shuffle (P-SN Table 3 ablation)")  # fmt: skip
