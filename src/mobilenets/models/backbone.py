"""The one way a head gets its backbone: a registered classifier cut to the feature maps the head taps.

``build_backbone(name, taps, ...)`` takes a registered classification model's name (``mobilenet_v3_large_100``),
optionally dilated to an ``output_stride`` and with a reduced tail, and returns a ``FeatureNetwork`` whose
forward gives the tapped maps and whose ``feature_info`` says their channels and reductions. SSDLite keeps it
as its ``backbone``; the segmentation heads keep its ``network`` (their state dicts predate this module).

Two reduced tails exist in the papers and both are kept:

- ``"c4"``, P-V3 Table 6's "+" (SSDLite): MobileNetV3's own ``reduced_tail``, the channels after the C4 tap
  halved, the last strided block keeping its expansion (and the final conv halved).
- ``"rf2"``, P-V3 Table 7's RF2 (LR-ASPP, R-ASPP): DeepLab's ``mobilenet_v3_*_seg``, the blocks from the last
  strided one on with half their output filters, that block's expansion halved too for V3 (``reduce_last_block``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..layers import make_divisible
from ..registry import get_entry
from .net import FeatureNetwork, Network
from .spec import BlockSpec

HEAD_FAMILIES = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3")  # families a head can tap
REDUCED_TAILS = ("c4", "rf2")


def reduce_last_block(specs: list[BlockSpec], halve_first_expansion: bool) -> list[BlockSpec]:
    """P-V3 Table 7's RF2: the blocks from the last strided one on get half the output filters.

    Later blocks keep their expansion ratio. DeepLab's ``mobilenet_v3_*_seg`` halves the expansion
    of the strided block too (Large 672 -> 336, Small 288 -> 144), which is what reproduces
    Table 7's 1.51M / 0.47M; the V2 rows are reproduced with it kept (P-V3 gives no V2 table).
    """
    last = max(i for i, spec in enumerate(specs) if spec.stride == 2)
    out = list(specs[:last])
    for i, spec in enumerate(specs[last:], last):
        in_chs = spec.in_chs if i == last else out[-1].out_chs
        if i == last:
            exp = spec.exp_chs // 2 if halve_first_expansion else spec.exp_chs
        else:
            exp = make_divisible(spec.exp_chs * in_chs / spec.in_chs)
        se = make_divisible(exp / 4) if spec.se_chs else 0
        out.append(spec.replace(in_chs=in_chs, exp_chs=exp, out_chs=spec.out_chs // 2, se_chs=se))
    return out


def backbone_family(name: str, families: Sequence[str] = HEAD_FAMILIES, head: str = "a head") -> str:
    """The family of the registered classifier ``name``; a ValueError naming what ``head`` takes otherwise."""
    try:
        entry = get_entry(name)
    except ValueError as err:
        raise ValueError(f"unknown backbone {name!r}: {err}") from None
    family = entry.builder.__name__
    if family not in families or entry.task != "classification":
        versions = [f.replace("mobilenet_v", "V") for f in families]
        kinds = " or ".join(filter(None, (", ".join(versions[:-1]), versions[-1])))
        names = ", ".join(f"{f}_*" for f in families)
        raise ValueError(f"{head} needs a MobileNet{kinds} backbone ({names}), got {name!r}")
    return family


def c4_c5_taps(network: Network) -> list[str]:
    """C4 and C5: the expansion at OS16 feeding the last stride-2 block (else the OS16 stage end), the last map."""
    expansions = [f for f in network.feature_info if f.kind == "expansion" and f.reduction == 16]
    stage16 = [f for f in network.stage_features() if f.reduction == 16]
    c4 = (expansions or stage16)[-1].module
    return [c4, network.stage_features()[-1].module]


def build_backbone(
    name: str,
    taps: Sequence[str] | Callable[[Network], Sequence[str]],
    *,
    output_stride: int = 32,
    reduced_tail: str | None = None,
    dilate_first: bool = False,
    in_chans: int = 3,
    width_mult: float | None = None,
    bn_eps: float | None = None,
    bn_momentum: float | None = None,
    padding: str | None = None,
    families: Sequence[str] = HEAD_FAMILIES,
    head: str = "a head",
) -> FeatureNetwork:
    """The registered classifier ``name`` without its classifier, giving the maps ``taps`` names.

    ``taps``: ``forward_intermediates`` names (``FeatureInfo.module`` or a block's ``stages.i.j``), or a
    function of the built network giving them. ``output_stride`` 16 or 8 dilates the later layers
    (``dilate_first``: torchvision's convention, MobileNetV3 only); ``reduced_tail`` one of ``REDUCED_TAILS``
    (module docstring); ``width_mult`` overrides the name's width; ``bn_eps`` / ``bn_momentum`` / ``padding``
    the classifier's defaults where given. What comes after the last tap is dropped (neither computed nor
    counted). ``families`` and ``head`` word the error for a backbone the head cannot take.
    """
    family = backbone_family(name, families, head)
    if reduced_tail not in (None, *REDUCED_TAILS):
        raise ValueError(f"reduced_tail must be one of {', '.join(REDUCED_TAILS)} or None, got {reduced_tail!r}")
    if reduced_tail == "c4" and family != "mobilenet_v3":
        raise ValueError(f"the C4 reduced tail halves MobileNetV3's C4-C5 layers; {name} has none")
    options: dict = dict(num_classes=0, in_chans=in_chans, output_stride=output_stride)
    if family == "mobilenet_v3":
        options["dilate_first"] = dilate_first
    elif dilate_first:
        raise ValueError("dilate_first is torchvision's MobileNetV3 convention; a MobileNetV2 backbone takes False")
    for key, value in (("width_mult", width_mult), ("bn_eps", bn_eps), ("bn_momentum", bn_momentum),
                       ("padding", padding)):  # fmt: skip
        if value is not None:
            options[key] = value
    if reduced_tail == "c4":
        options["reduced_tail"] = True
    net = _classifier(name, options)
    if reduced_tail == "rf2":
        specs = reduce_last_block(net.blocks, halve_first_expansion=family == "mobilenet_v3")
        extra = {"head_chs": net.final_conv.conv.out_channels // 2} if family == "mobilenet_v3" else {}
        net = _classifier(name, {**options, "blocks": [s.to_dict() for s in specs], **extra})
    return FeatureNetwork(net, taps=list(taps(net) if callable(taps) else taps))


def _classifier(name: str, options: dict) -> Network:
    """The registered classifier ``name`` with ``options``, as create_model builds it: its family's builder on
    the entry's fixed options (models.factory sits above the families, so it is not called from here)."""
    entry = get_entry(name)
    net = entry.builder(**{**entry.fixed, **{k: v for k, v in options.items() if v is not None}})
    net.name = name
    return net
