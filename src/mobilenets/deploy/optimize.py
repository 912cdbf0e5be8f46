"""``optimize(model)``: an inference copy with exact rewrites that make PyTorch eager faster on CPU.

Rewrites (all exact up to fp32 rounding):

- Conv-BN folding: every ``ConvNormAct`` conv absorbs its BatchNorm (the conv gains a bias).
- channels_last: activations are kept NHWC, where oneDNN's depthwise kernels are fastest, and
  every dense 1x1 conv becomes one GEMM on the NHWC view (``F.linear`` on the permuted tensor,
  no copies); PyTorch would otherwise send single-threaded 1x1 convs to its im2col path, which
  copies the input on each call. Each folded conv + activation becomes one module
  (``FusedConvAct``, in-place activation) to cut per-call overhead.
- SE blocks run their two 1x1 convs as ``nn.Linear`` on the pooled vector.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..layers import ConvNormAct, SqueezeExcite

log = logging.getLogger(__name__)


def _activation_fn(act: nn.Module):
    """The in-place functional form of a block activation (None for Identity); unknown modules are kept."""
    if isinstance(act, nn.Identity):
        return None
    if isinstance(act, nn.ReLU):
        return F.relu_
    if isinstance(act, nn.ReLU6):
        return lambda x: F.hardtanh_(x, 0.0, 6.0)
    if isinstance(act, nn.Hardswish):
        return lambda x: F.hardswish(x, inplace=True)
    return act


class FusedConvAct(nn.Module):
    """A folded ``ConvNormAct`` as one module: conv (or NHWC GEMM for dense 1x1) + in-place activation.

    Fewer Python module hops matter here: a batch-1 MobileNet runs ~200 small ops, so per-call
    overhead is a sizeable part of eager latency.
    """

    def __init__(self, block: ConvNormAct, gemm: bool):
        super().__init__()
        conv = block.conv
        self.gemm = gemm
        self.pad = block.pad if not isinstance(block.pad, nn.Identity) else None
        weight = conv.weight.detach().flatten(1) if gemm else conv.weight.detach()
        self.weight = nn.Parameter(weight.clone(), requires_grad=False)
        bias = conv.bias.detach().clone() if conv.bias is not None else torch.zeros(conv.out_channels)
        self.bias = nn.Parameter(bias, requires_grad=False)
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        self.act = _activation_fn(block.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            x = self.pad(x)
        if self.gemm:
            # channels_last x: the permutes are free views and the result is channels_last again.
            x = F.linear(x.permute(0, 2, 3, 1), self.weight, self.bias).permute(0, 3, 1, 2)
        else:
            x = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return x if self.act is None else self.act(x)


class LinearSqueezeExcite(nn.Module):
    """``SqueezeExcite`` with its 1x1 convs as ``nn.Linear`` on the pooled (N, C) vector."""

    def __init__(self, se: SqueezeExcite):
        super().__init__()
        self.fc1 = _conv1x1_to_linear(se.fc1)
        self.fc2 = _conv1x1_to_linear(se.fc2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = F.hardsigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3))))))
        return x * scale[:, :, None, None]


def _conv1x1_to_linear(conv: nn.Conv2d) -> nn.Linear:
    linear = nn.Linear(conv.in_channels, conv.out_channels, bias=conv.bias is not None)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.flatten(1))
        if conv.bias is not None:
            linear.bias.copy_(conv.bias)
    return linear


def _is_dense_pointwise(conv: nn.Module) -> bool:
    return (
        type(conv) is nn.Conv2d
        and conv.kernel_size == (1, 1)
        and conv.stride == (1, 1)
        and conv.groups == 1
        and conv.padding == (0, 0)
        and conv.dilation == (1, 1)
    )


def _to_channels_last(module: nn.Module, args: tuple) -> tuple:
    (x,) = args
    return (x.contiguous(memory_format=torch.channels_last),)


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every ``ConvNormAct``'s BatchNorm into its conv, in place (eval mode only); returns the count."""
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode (call model.eval()); BN folding uses running stats")
    folded = 0
    for module in model.modules():
        if isinstance(module, ConvNormAct) and isinstance(module.bn, nn.BatchNorm2d):
            module.conv = fuse_conv_bn_eval(module.conv, module.bn)
            module.bn = nn.Identity()
            folded += 1
    return folded


def optimize(model: nn.Module, *, channels_last: bool = True) -> nn.Module:
    """An eval-mode inference copy of ``model`` with BN folded (and, with ``channels_last``, the NHWC rewrites).

    ``channels_last=False`` gives the export-friendly variant: BN folding and Linear SE only, so
    that exported graphs stay plain NCHW convolutions. The input may be in any memory format.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"optimize needs a torch.nn.Module, got {type(model).__name__}")
    inference = copy.deepcopy(model).eval()
    for param in inference.parameters():
        param.requires_grad_(False)
    folded = fold_batchnorm(inference)
    rewritten = 0
    for module in list(inference.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, SqueezeExcite):
                setattr(module, child_name, LinearSqueezeExcite(child))
                rewritten += 1
            elif channels_last and isinstance(child, ConvNormAct):
                setattr(module, child_name, FusedConvAct(child, gemm=_is_dense_pointwise(child.conv)))
                rewritten += 1
            elif isinstance(child, nn.Dropout):
                setattr(module, child_name, nn.Identity())
    if channels_last:
        inference = inference.to(memory_format=torch.channels_last)
        inference.register_forward_pre_hook(_to_channels_last)
    for param in inference.parameters():
        param.requires_grad_(False)
    if hasattr(inference, "metadata") and isinstance(inference.metadata, dict):
        inference.metadata = {**inference.metadata, "optimized": {"channels_last": channels_last}}
    log.debug("optimize: folded %d BatchNorms, rewrote %d modules", folded, rewritten)
    return inference
