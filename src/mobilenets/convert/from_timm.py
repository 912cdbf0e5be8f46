"""timm ``mobilenetv1_*``, ``mobilenetv2_*``, ``mobilenetv3_*`` and ``tf_mobilenetv3_*`` (spec §4.3-4.5).

The ``tf_`` ports of TF-slim weights need TF 'SAME' padding and BN eps 1e-3.
"""

from __future__ import annotations

import logging
import re

from torch import nn

from ..layers import DepthwiseSeparable, InvertedResidual
from ..preprocessing import IMAGENET_MEAN, IMAGENET_STD, INCEPTION_MEAN, INCEPTION_STD, Preprocessing
from ._common import Copy, Target, block_list, check_block_kinds, sort_numeric, torch_bn, torch_cna

log = logging.getLogger(__name__)

SOURCE = "timm"
_TF = {"padding": "same", "bn_eps": 1e-3}
# timm name -> (our name, family, options, mean/std of its default weights)
_TABLE = {
    "mobilenetv1_100": ("mobilenet_v1_100", "mobilenet_v1", {"width_mult": 1.0}, "inception"),
    "mobilenetv1_100h": ("mobilenet_v1_100h", "mobilenet_v1", {"width_mult": 1.0, "head_chs": 1024}, "inception"),
    "mobilenetv1_125": ("mobilenet_v1_125", "mobilenet_v1", {"width_mult": 1.25}, "inception"),
    **{
        f"mobilenetv2_{a}": (f"mobilenet_v2_{a}", "mobilenet_v2", {"width_mult": int(a) / 100}, "imagenet")
        for a in ("035", "050", "075", "100", "140")
    },
    **{
        f"mobilenetv3_{size}_{a}": (f"mobilenet_v3_{size}_{a}", "mobilenet_v3",
                                    {"size": size, "width_mult": int(a) / 100}, "imagenet")
        for size in ("large", "small") for a in ("075", "100")
    },
    **{
        f"tf_mobilenetv3_{size}_{a}": (f"mobilenet_v3_{size}_{a}", "mobilenet_v3",
                                       {"size": size, "width_mult": int(a) / 100, **_TF}, "inception")
        for size in ("large", "small") for a in ("075", "100")
    },
    **{
        f"tf_mobilenetv3_{size}_minimal_100": (f"mobilenet_v3_{size}_minimal_100", "mobilenet_v3",
                                               {"size": size, "minimal": True, **_TF}, "inception")
        for size in ("large", "small")
    },
}  # fmt: skip
# Known timm names this architecture cannot hold, and why.
UNSUPPORTED = {
    "mobilenetv2_110d": "it is depth-scaled (more blocks per stage than P-V2 Table 2)",
    "mobilenetv2_120d": "it is depth-scaled (more blocks per stage than P-V2 Table 2)",
    "mobilenetv3_large_150d": "it is depth-scaled",
    "mobilenetv3_small_050": "timm fixes its stem at 16 channels below width 0.75",
    "mobilenetv3_rw": "it is a timm-specific variant with a different head",
}


def _preprocessing(timm_name: str, stats: str) -> Preprocessing:
    """The default pretrained config timm ships for this name (read locally), else its mean/std at 224/0.875."""
    mean, std = (INCEPTION_MEAN, INCEPTION_STD) if stats == "inception" else (IMAGENET_MEAN, IMAGENET_STD)
    size, crop_pct, interpolation = 224, 0.875, "bilinear"
    try:
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(timm_name)
    except Exception:  # timm missing or the name unknown to this timm version: use the table
        cfg = None
    if cfg is not None:
        mean, std = cfg.mean, cfg.std
        size = cfg.input_size[-1]
        crop_pct = cfg.crop_pct or crop_pct
        if cfg.interpolation in ("bilinear", "bicubic", "nearest"):
            interpolation = cfg.interpolation
    return Preprocessing((size, size), round(size / crop_pct), interpolation, mean=mean, std=std)


def target(name: str) -> Target:
    our, family, options, stats = _TABLE[name]
    return Target(our, family, options, _preprocessing(name, stats), name)


TARGETS = _TABLE  # names accepted by resolve()


def plan(model: nn.Module, target: Target, keys: set[str]) -> list[Copy]:
    check_block_kinds(model, (DepthwiseSeparable, InvertedResidual), SOURCE)
    steps = torch_cna("stem", "conv_stem", "bn1")
    prefixes = sort_numeric({m.group(0) for k in keys if (m := re.match(r"blocks\.\d+\.\d+", k))})
    head_block = [p for p in prefixes if f"{p}.conv.weight" in keys]  # ConvBnAct: V3's 960/576 conv
    prefixes = [p for p in prefixes if p not in head_block]
    blocks = block_list(model)
    if len(prefixes) != len(blocks):
        raise ValueError(f"the checkpoint has {len(prefixes)} timm blocks (blocks.S.I.*) but {model.name} has "
                         f"{len(blocks)}; check --from and the model name")  # fmt: skip
    for (ours, block), theirs in zip(blocks, prefixes, strict=True):
        if isinstance(block, InvertedResidual) and block.has_expand:  # timm InvertedResidual
            steps += torch_cna(f"{ours}.expand", f"{theirs}.conv_pw", f"{theirs}.bn1")
            steps += torch_cna(f"{ours}.dw", f"{theirs}.conv_dw", f"{theirs}.bn2")
            project = ("conv_pwl", "bn3")
        else:  # timm DepthwiseSeparableConv: dw, [se], pw
            steps += torch_cna(f"{ours}.dw", f"{theirs}.conv_dw", f"{theirs}.bn1")
            project = ("conv_pw", "bn2")
        if isinstance(block, InvertedResidual) and not isinstance(block.se, nn.Identity):
            for fc, name in (("fc1", "conv_reduce"), ("fc2", "conv_expand")):
                steps += [Copy(f"{ours}.se.{fc}.{p}", f"{theirs}.se.{name}.{p}") for p in ("weight", "bias")]
        part = "project" if isinstance(block, InvertedResidual) else "pw"
        steps += torch_cna(f"{ours}.{part}", f"{theirs}.{project[0]}", f"{theirs}.{project[1]}")
    if not isinstance(model.pre_logits, nn.Identity):  # V3: blocks.N.0 conv + BN, then conv_head with bias
        if not head_block:
            raise ValueError(f"the checkpoint has no 960/576 head conv block; it is not a timm {model.name}")
        steps += [Copy("final_conv.conv.weight", f"{head_block[0]}.conv.weight")] + torch_bn(
            "final_conv.bn", f"{head_block[0]}.bn1"
        )
        steps += [
            Copy("pre_logits.0.weight", "conv_head.weight", _flatten_1x1),
            Copy("pre_logits.0.bias", "conv_head.bias"),
        ]
    elif not isinstance(model.final_conv, nn.Identity):  # V2: conv_head + bn2
        steps += [Copy("final_conv.conv.weight", "conv_head.weight")] + torch_bn("final_conv.bn", "bn2")
    if model.num_classes:
        steps += [Copy(f"classifier.{p}", f"classifier.{p}") for p in ("weight", "bias")]
    return steps


def _flatten_1x1(t):
    return t.flatten(1) if t.dim() == 4 else t
