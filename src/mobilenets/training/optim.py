"""Optimizers, the learning-rate schedule and the EMA of weights that every task trains with.

The schedule is a ``LambdaLR`` over ``lr_factor`` (linear warm-up, then cosine, linear or
exponential decay per step): one closed form, so a resumed run recomputes it exactly. The EMA is
ours rather than ``torch.optim.swa_utils.AveragedModel``: it needs the early warm-up
``min(decay, (1 + t) / (10 + t))`` (TF's ``num_updates``) and copies BN's integer buffers, and a
plain module's state dict checkpoints and reloads exactly.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from .recipes import Recipe


def param_groups(model: nn.Module, weight_decay: float, no_decay: str) -> list[dict]:
    """Weight decay off for BN and biases (and depthwise kernels with ``bn_bias_dw``, as P-V3)."""
    if no_decay == "none" or weight_decay == 0:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    skip = set()
    for module in model.modules():
        is_dw = isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels
        if no_decay == "bn_bias_dw" and is_dw:
            skip.add(id(module.weight))
    decay, other = [], []
    for p in model.parameters():
        if p.requires_grad:
            (other if p.ndim <= 1 or id(p) in skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    groups = param_groups(model, recipe.weight_decay, recipe.no_decay)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov)
    if recipe.optimizer == "rmsprop":
        return torch.optim.RMSprop(
            groups, lr=recipe.lr, alpha=recipe.rmsprop_alpha, eps=recipe.eps, momentum=recipe.momentum
        )
    return torch.optim.AdamW(groups, lr=recipe.lr, eps=recipe.eps)


def lr_factor(step: int, recipe: Recipe, steps_per_epoch: int) -> float:
    """Multiplier of the base lr before optimizer step ``step`` (0-based)."""
    total = recipe.epochs * steps_per_epoch
    warmup = min(int(recipe.warmup_epochs * steps_per_epoch), total - 1)
    if step < warmup:
        return (step + 1) / (warmup + 1)
    t = (step - warmup) / max(1, total - warmup)
    if recipe.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    if recipe.schedule == "linear":
        return 1 - t
    return recipe.decay_rate ** ((step - warmup) / (recipe.decay_epochs * steps_per_epoch))


class EMA:
    """Exponential moving average of weights (and copy of buffers), with the usual early warm-up."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int):
        d = min(self.decay, (1 + step) / (10 + step))
        ema = self.module.state_dict()
        for name, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                ema[name].mul_(d).add_(value.detach(), alpha=1 - d)
            else:
                ema[name].copy_(value)
