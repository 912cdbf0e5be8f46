"""megvii ShuffleNet-Series ``ShuffleNetV1`` checkpoints (spec §3.8, §4.8).

megvii shuffles after the depthwise conv + BN with the inverse of the paper's
permutation; our unit shuffles before the depthwise conv. Built with
``shuffle_order="megvii"`` and the depthwise/BN channels permuted, it computes
the same function. The weights expect BGR input in 0-255 without normalization.
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers import ShuffleUnit
from ..preprocessing import Preprocessing
from ._common import Copy, Target, block_list, check_block_kinds, torch_bn, torch_cna

SOURCE = "megvii"
PREPROCESSING = Preprocessing((224, 224), 256, channel_order="BGR", value_range=255.0, mean=(0.0, 0.0, 0.0),
                              std=(1.0, 1.0, 1.0))  # fmt: skip
# megvii released g=3 and g=8 at 0.5x, 1.0x, 1.5x, 2.0x; any shuffled variant of ours has the same layout.
TARGETS = {
    f"shufflenet_v1_g{g}_{s}": {"groups": g, "scale": int(s) / 100}
    for g in (1, 2, 3, 4, 8)
    for s in ("025", "050", "100", "150", "200")
}


def target(name: str) -> Target:
    options = {**TARGETS[name], "shuffle_order": "megvii"}
    scale = f"{options['scale']:.1f}x"
    return Target(name, "shufflenet_v1", options, PREPROCESSING, f"ShuffleNetV1(group={options['groups']}, {scale})")


def _megvii_to_ours(channels: int, groups: int) -> torch.Tensor:
    """Index array: our depthwise channel k holds megvii's channel idx[k] (the megvii shuffle itself)."""
    return torch.arange(channels).view(channels // groups, groups).t().reshape(-1)


def plan(model: nn.Module, target: Target, keys: set[str]) -> list[Copy]:
    check_block_kinds(model, (ShuffleUnit,), SOURCE)
    groups = target.options["groups"]
    steps = torch_cna("stem.0", "first_conv.0", "first_conv.1")
    for k, (ours, block) in enumerate(block_list(model)):
        theirs = f"features.{k}"
        steps += torch_cna(f"{ours}.gconv1", f"{theirs}.branch_main_1.0", f"{theirs}.branch_main_1.1")
        if isinstance(block.shuffle, nn.Identity):
            permute = None
        else:
            index = _megvii_to_ours(block.dw.conv.out_channels, groups)
            permute = _take(index)  # reorders dim 0 of the dw weight and of every BN vector
        steps.append(Copy(f"{ours}.dw.conv.weight", f"{theirs}.branch_main_1.3.weight", permute))
        steps += torch_bn(f"{ours}.dw.bn", f"{theirs}.branch_main_1.4", permute)
        steps += torch_cna(f"{ours}.gconv2", f"{theirs}.branch_main_2.0", f"{theirs}.branch_main_2.1")
    if model.num_classes:
        steps.append(Copy("classifier.weight", "classifier.0.weight"))
        # megvii's classifier has no bias: ours gets zeros of the right length
        steps.append(Copy("classifier.bias", "classifier.0.weight", lambda w: torch.zeros(w.shape[0], dtype=w.dtype)))
    return steps


def _take(index: torch.Tensor):
    return lambda t: t[index]
