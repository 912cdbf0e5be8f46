"""Params and multiply-adds per layer, counted the papers' way.

MAdds are the multiply-adds of conv and linear layers (BN, activations, pooling
and additions are not counted, as in P-V1 Table 2 and TF-slim). Params are the
weights and biases plus BN's affine gamma/beta (running statistics are buffers,
not parameters).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import nn

from .layers import ConvNormAct, SqueezeExcite
from .models.factory import create_model
from .registry import Published, get_entry


@dataclass(frozen=True)
class LayerStat:
    name: str  # module path of the conv or linear layer
    kind: str  # "conv 3x3", "conv 1x1", "group conv 1x1", "depthwise 5x5", "SE", "fully connected"
    in_shape: tuple[int, ...]  # (C, H, W) or (features,)
    out_shape: tuple[int, ...]
    params: int  # weights + bias
    bn_params: int  # gamma + beta of the BatchNorm that follows it
    madds: int


@dataclass
class Profile:
    name: str
    resolution: tuple[int, int]
    layers: list[LayerStat] = field(default_factory=list)

    @property
    def params(self) -> int:
        return self.count()[0]

    @property
    def madds(self) -> int:
        return self.count()[1]

    def count(
        self, count_bn: bool = True, count_classifier: bool = True, classifier_bias: bool = True
    ) -> tuple[int, int]:
        """(params, MAdds) under a source's counting convention."""
        params = madds = 0
        for layer in self.layers:
            if layer.name == "classifier":
                if not count_classifier:
                    continue
                if not classifier_bias:
                    params -= layer.out_shape[0]
            params += layer.params + (layer.bn_params if count_bn else 0)
            madds += layer.madds
        return params, madds

    def breakdown(self, count_bn: bool = True) -> dict[str, tuple[float, float]]:
        """Share of MAdds and params per layer type, in percent (P-V1 Table 2 counts without BN)."""
        madds, params = defaultdict(int), defaultdict(int)
        for layer in self.layers:
            madds[layer.kind] += layer.madds
            params[layer.kind] += layer.params + (layer.bn_params if count_bn else 0)
        total_m, total_p = sum(madds.values()), sum(params.values())
        kinds = sorted(madds, key=lambda k: -madds[k])
        return {k: (100 * madds[k] / total_m, 100 * params[k] / total_p) for k in kinds}

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "resolution": list(self.resolution),
            "params": self.params,
            "madds": self.madds,
            "breakdown": {k: {"madds_pct": m, "params_pct": p} for k, (m, p) in self.breakdown().items()},
            "layers": [
                {
                    "name": layer.name, "kind": layer.kind, "in_shape": list(layer.in_shape),
                    "out_shape": list(layer.out_shape), "params": layer.params + layer.bn_params,
                    "madds": layer.madds,
                }
                for layer in self.layers
            ],
        }  # fmt: skip


def _kind(name: str, module: nn.Module, in_se: bool) -> str:
    if isinstance(module, nn.Linear):
        return "fully connected"
    if in_se:
        return "SE"
    k = "x".join(map(str, module.kernel_size))
    if module.groups == 1:
        return f"conv {k}"
    if module.groups == module.in_channels == module.out_channels:
        return f"depthwise {k}"
    return f"group conv {k}"


def parse_resolution(value: int | str | tuple[int, int]) -> tuple[int, int]:
    """224, "224" or "224x160" (height x width) to (H, W)."""
    if isinstance(value, tuple):
        h, w = value
    elif isinstance(value, int):
        h = w = value
    else:
        match = re.fullmatch(r"\s*(\d+)\s*(?:[x,]\s*(\d+))?\s*", str(value))
        if not match:
            raise ValueError(f"resolution must be like 224 or 224x160 (height x width), got {value!r}")
        h = int(match.group(1))
        w = int(match.group(2) or h)
    return int(h), int(w)


@torch.no_grad()
def profile(model: nn.Module, resolution: int | str | tuple[int, int] = 224) -> Profile:
    """Per-layer params and MAdds of ``model`` for one image of ``resolution``."""
    h, w = parse_resolution(resolution)
    minimum = getattr(model, "min_input_size", 1)
    if min(h, w) < minimum:
        raise ValueError(f"resolution {h}x{w} is too small: {getattr(model, 'name', 'the model')} needs >= {minimum}")
    bn_of = {}
    for name, module in model.named_modules():
        if isinstance(module, ConvNormAct):
            bn_of[f"{name}.conv"] = sum(p.numel() for p in module.bn.parameters())
    se_prefixes = tuple(f"{name}." for name, m in model.named_modules() if isinstance(m, SqueezeExcite))

    stats: list[LayerStat] = []

    def hook(name):
        def record(module, inputs, output):
            x = inputs[0]
            per_out = module.in_features if isinstance(module, nn.Linear) else (
                module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            )  # fmt: skip
            stats.append(
                LayerStat(
                    name=name,
                    kind=_kind(name, module, name.startswith(se_prefixes)),
                    in_shape=tuple(x.shape[1:]),
                    out_shape=tuple(output.shape[1:]),
                    params=sum(p.numel() for p in module.parameters()),
                    bn_params=bn_of.get(name, 0),
                    madds=output[0].numel() * per_out,
                )
            )

        return record

    handles = [
        m.register_forward_hook(hook(n)) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    was_training = model.training
    try:
        model.eval()
        param = next(model.parameters())
        model(torch.zeros(1, getattr(model, "in_chans", 3), h, w, dtype=param.dtype, device=param.device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return Profile(getattr(model, "name", type(model).__name__), (h, w), stats)


# --- published figures ------------------------------------------------------


def parse_figure(text: str) -> tuple[float, float]:
    """A printed figure ("4.2M", "569M", "3,504,872") as (value, half a unit of its last digit)."""
    match = re.fullmatch(r"([\d,]+)(?:\.(\d+))?([MB]?)", text.strip())
    if not match:
        raise ValueError(f"cannot read figure {text!r}")
    whole, decimals, unit = match.groups()
    scale = {"": 1, "M": 1e6, "B": 1e9}[unit]
    value = float(whole.replace(",", "") + ("." + decimals if decimals else "")) * scale
    half_unit = 0.5 * scale * 10 ** -(len(decimals) if decimals else 0)
    return value, half_unit


def is_exact(text: str) -> bool:
    """Whether a printed figure is an exact count ("3,504,872"), not a rounded one ("3.5M", "569M")."""
    return re.fullmatch(r"[\d,]+", text.strip()) is not None


def figure_met(count: int, text: str, tolerance: float, truncated: bool = False) -> bool:
    """Whether ``count`` rounds (or truncates) to the printed figure, or lies within ``tolerance`` of it.

    An exact figure ("3,504,872") is met only by that count: a source that printed every digit
    counted every parameter, so any difference is a difference in the network or the counting.
    """
    value, half_unit = parse_figure(text)
    if is_exact(text):
        return count == value
    if truncated and value <= count < value + 2 * half_unit:
        return True
    return abs(count - value) <= max(half_unit, tolerance * value)


@dataclass(frozen=True)
class Comparison:
    model: str
    published: Published
    params: int  # our count under the source's convention
    madds: int

    def _check(self, ours: int, text: str | None) -> bool | None:
        pub = self.published
        return None if text is None else figure_met(ours, text, pub.tolerance, pub.truncated and not pub.erratum)

    @property
    def params_text(self) -> str | None:
        return self.published.corrected_params if self.published.erratum else self.published.params

    @property
    def madds_text(self) -> str | None:
        return self.published.corrected_madds if self.published.erratum else self.published.madds

    @property
    def params_ok(self) -> bool | None:
        return self._check(self.params, self.params_text)

    @property
    def madds_ok(self) -> bool | None:
        return self._check(self.madds, self.madds_text)

    @staticmethod
    def relative(ours: int, text: str | None) -> float | None:
        return None if text is None else ours / parse_figure(text)[0] - 1


def compare_published(name: str) -> list[Comparison]:
    """Our counts beside every published figure for a registered model, each under its source's convention."""
    entry = get_entry(name)
    models: dict[tuple, nn.Module] = {}
    profiles: dict[tuple, Profile] = {}
    out = []
    for pub in entry.published:
        if pub.params is None and pub.madds is None:
            continue
        key = (pub.num_classes, tuple(sorted(pub.options.items())))
        if key not in models:
            models[key] = create_model(name, num_classes=pub.num_classes, **pub.options)
        if (key, pub.resolution) not in profiles:
            profiles[key, pub.resolution] = profile(models[key], pub.resolution)
        params, madds = profiles[key, pub.resolution].count(pub.count_bn, pub.count_classifier, pub.classifier_bias)
        out.append(Comparison(name, pub, params, madds))
    return out
