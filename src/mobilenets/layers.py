"""The block library every network here is built from.

Each block has named parts (``expand``, ``dw``, ``se``, ``project``...), optional
parts are ``nn.Identity``, and ``forward`` is straight-line code so that every
exporter (torch.export, ONNX, OpenVINO) sees the same graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

ACTIVATIONS = ("relu", "relu6", "hswish", "none")
PADDINGS = ("symmetric", "same")


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never more than 10% down.

    The rule of TF-slim, Keras, timm and torchvision (``_make_divisible``).
    """
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def make_activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    if name == "hswish":
        return nn.Hardswish(inplace=True)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")


@dataclass(frozen=True)
class NormConfig:
    """BatchNorm settings: PyTorch defaults, or eps=1e-3 for TF/Keras-trained weights."""

    eps: float = 1e-5
    momentum: float = 0.1

    def __post_init__(self):
        if not 0 < self.eps < 1:
            raise ValueError(f"bn_eps must be in (0, 1), got {self.eps}")
        if not 0 < self.momentum <= 1:
            raise ValueError(f"bn_momentum must be in (0, 1], got {self.momentum}")


class PadSame(nn.Module):
    """TF 'SAME' padding for a strided conv: the extra pixel goes bottom/right.

    Needed only to reproduce TF/Keras-trained weights exactly; the default
    symmetric padding is a plain ``padding=`` argument of the conv.
    """

    def __init__(self, kernel: int, stride: int, dilation: int = 1):
        super().__init__()
        self.kernel = dilation * (kernel - 1) + 1  # the dilated kernel's extent
        self.stride = stride

    def _amount(self, size: int) -> tuple[int, int]:
        total = max((math.ceil(size / self.stride) - 1) * self.stride + self.kernel - size, 0)
        return total // 2, total - total // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = self._amount(x.shape[-2])
        left, right = self._amount(x.shape[-1])
        return F.pad(x, (left, right, top, bottom))


class ConvNormAct(nn.Module):
    """Conv (no bias) -> BatchNorm -> activation; the unit of every network here."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel: int = 1,
        stride: int = 1,
        groups: int = 1,
        act: str = "relu",
        norm: NormConfig = NormConfig(),
        padding: str = "symmetric",
        dilation: int = 1,
    ):
        super().__init__()
        if padding not in PADDINGS:
            raise ValueError(f"unknown padding {padding!r}; valid: {', '.join(PADDINGS)}")
        # TF 'SAME' equals symmetric padding except for strided convs (and even kernels).
        dynamic = padding == "same" and (stride > 1 or kernel % 2 == 0)
        self.pad = PadSame(kernel, stride, dilation) if dynamic else nn.Identity()
        symmetric = dilation * (kernel - 1) // 2
        self.conv = nn.Conv2d(
            in_chs, out_chs, kernel, stride, padding=0 if dynamic else symmetric, dilation=dilation, groups=groups,
            bias=False,
        )  # fmt: skip
        self.bn = nn.BatchNorm2d(out_chs, eps=norm.eps, momentum=norm.momentum)
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(self.pad(x))))


class SqueezeExcite(nn.Module):
    """SE of MobileNetV3 (P-V3 Sec 5.3): mean pool, 1x1 (bias) + ReLU, 1x1 (bias), hard-sigmoid gate."""

    def __init__(self, chs: int, squeeze: int):
        super().__init__()
        self.fc1 = nn.Conv2d(chs, squeeze, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(squeeze, chs, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.act(self.fc1(scale))))


class DepthwiseSeparable(nn.Module):
    """MobileNetV1 unit (P-V1 Fig. 3): 3x3 depthwise + BN + act, 1x1 pointwise + BN + act."""

    def __init__(
        self, in_chs: int, out_chs: int, stride: int, act: str, norm: NormConfig, padding: str, dilation: int = 1
    ):
        super().__init__()
        self.dw = ConvNormAct(
            in_chs, in_chs, 3, stride, groups=in_chs, act=act, norm=norm, padding=padding, dilation=dilation
        )
        self.pw = ConvNormAct(in_chs, out_chs, 1, act=act, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class InvertedResidual(nn.Module):
    """Inverted residual with linear bottleneck (P-V2 Table 1), with optional SE (P-V3 Fig. 4).

    The 1x1 expansion is skipped when ``exp == in``; the residual is used iff
    stride 1 and ``in == out``.
    """

    def __init__(
        self,
        in_chs: int,
        exp_chs: int,
        out_chs: int,
        kernel: int,
        stride: int,
        act: str,
        se_chs: int,
        norm: NormConfig,
        padding: str,
        dilation: int = 1,
    ):
        super().__init__()
        self.has_expand = exp_chs != in_chs
        self.expand = ConvNormAct(in_chs, exp_chs, 1, act=act, norm=norm) if self.has_expand else nn.Identity()
        self.dw = ConvNormAct(
            exp_chs, exp_chs, kernel, stride, groups=exp_chs, act=act, norm=norm, padding=padding, dilation=dilation
        )
        self.se = SqueezeExcite(exp_chs, se_chs) if se_chs else nn.Identity()
        self.project = ConvNormAct(exp_chs, out_chs, 1, act="none", norm=norm)
        self.use_residual = stride == 1 and in_chs == out_chs

    def forward_with_taps(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Block output, and the expansion and depthwise outputs (the SSDLite C4 tap, P-V3 Sec 6.3;
        the LR-ASPP skip, Sec 6.4)."""
        expanded = self.expand(x)
        depthwise = self.dw(expanded)
        out = self.project(self.se(depthwise))
        if self.use_residual:
            out = out + x
        return out, (expanded, depthwise)

    def forward_with_expansion(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Block output and the expansion-layer output."""
        out, (expanded, _) = self.forward_with_taps(x)
        return out, expanded

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Written out rather than through forward_with_taps: one call and no tuple per block on the hot path.
        out = self.project(self.se(self.dw(self.expand(x))))
        return out + x if self.use_residual else out


SHUFFLE_ORDERS = ("paper", "megvii")


class ChannelShuffle(nn.Module):
    """P-SN Sec 3.1: reshape channels to (groups, n), transpose, flatten.

    ``order="megvii"`` is the inverse permutation (reshape to (n, groups)) that
    megvii's released ShuffleNetV1 weights were trained with; the two agree iff n == groups.
    """

    def __init__(self, groups: int, order: str = "paper"):
        super().__init__()
        if order not in SHUFFLE_ORDERS:
            raise ValueError(f"unknown shuffle order {order!r}; valid: {', '.join(SHUFFLE_ORDERS)}")
        self.groups = groups
        self.order = order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if self.order == "megvii":
            return x.view(b, c // self.groups, self.groups, h, w).transpose(1, 2).reshape(b, c, h, w)
        return x.view(b, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNet unit (P-SN Fig. 2b/2c).

    1x1 GConv + BN + ReLU -> shuffle -> 3x3 DWConv + BN (no ReLU) -> 1x1 GConv + BN,
    then add (stride 1) or concat with a 3x3 average-pooled shortcut (stride 2), then ReLU.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        mid_chs: int,
        groups: int,
        stride: int,
        first_groups: int,
        shuffle: bool,
        norm: NormConfig,
        padding: str,
        shuffle_order: str = "paper",
        dilation: int = 1,
    ):
        super().__init__()
        if dilation != 1:
            raise ValueError("ShuffleNet units cannot be dilated (a stride-2 unit concatenates a pooled shortcut)")
        self.concat = stride == 2
        branch_chs = out_chs - in_chs if self.concat else out_chs
        self.gconv1 = ConvNormAct(in_chs, mid_chs, 1, groups=first_groups, act="relu", norm=norm)
        self.shuffle = ChannelShuffle(groups, shuffle_order) if shuffle and groups > 1 else nn.Identity()
        self.dw = ConvNormAct(mid_chs, mid_chs, 3, stride, groups=mid_chs, act="none", norm=norm, padding=padding)
        self.gconv2 = ConvNormAct(mid_chs, branch_chs, 1, groups=groups, act="none", norm=norm)
        self.shortcut = nn.AvgPool2d(3, 2, 1) if self.concat else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.gconv2(self.dw(self.shuffle(self.gconv1(x))))
        if self.concat:
            return self.act(torch.cat((self.shortcut(x), branch), 1))
        return self.act(x + branch)
