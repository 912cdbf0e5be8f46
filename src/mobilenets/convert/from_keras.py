"""Keras applications ``MobileNet``, ``MobileNetV2``, ``MobileNetV3Large/Small`` weight files (spec §4.6, §4.9).

Reads both HDF5 layouts without Keras: the legacy ``.h5`` of ``keras.applications``
(layers by name, ``weight_names`` attributes) and Keras 3's ``.weights.h5``
(``layers/<class>_<k>/vars/<i>``, layers numbered per class in model order).
Kernels are HWIO (conv) and HWC1 (depthwise); BN eps is 1e-3; padding is TF 'SAME'.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..layers import DepthwiseSeparable, InvertedResidual
from ._common import TF_PREPROCESSING, Copy, Target, block_list, check_block_kinds

SOURCE = "keras"
_VAR_NAMES = {
    "conv2d": ("kernel", "bias"),
    "depthwise_conv2d": ("kernel", "bias"),
    "dense": ("kernel", "bias"),
    "batch_normalization": ("gamma", "beta", "moving_mean", "moving_variance"),
}
# Keras BN momentum is PyTorch's 1 - decay: 0.99 in MobileNet, 0.999 in V2/V3.
_V1 = {"padding": "same", "bn_eps": 1e-3, "bn_momentum": 0.01}
_V23 = {"padding": "same", "bn_eps": 1e-3, "bn_momentum": 0.001}
_TABLE = {
    **{f"mobilenet_v1_{a}": ("mobilenet_v1", {"width_mult": int(a) / 100, **_V1})
       for a in ("025", "050", "075", "100")},
    **{f"mobilenet_v2_{a}": ("mobilenet_v2", {"width_mult": int(a) / 100, **_V23})
       for a in ("035", "050", "075", "100", "130", "140")},
    **{f"mobilenet_v3_{s}_{a}": ("mobilenet_v3", {"size": s, "width_mult": int(a) / 100, **_V23})
       for s in ("large", "small") for a in ("075", "100")},
    **{f"mobilenet_v3_{s}_minimal_100": ("mobilenet_v3", {"size": s, "minimal": True, **_V23})
       for s in ("large", "small")},
}  # fmt: skip
ALIASES = {
    "MobileNet": "mobilenet_v1_100",
    "MobileNetV2": "mobilenet_v2_100",
    "MobileNetV3Large": "mobilenet_v3_large_100",
    "MobileNetV3Small": "mobilenet_v3_small_100",
}
TARGETS = _TABLE


def target(name: str) -> Target:
    family, options = _TABLE[name]
    source_name = {v: k for k, v in ALIASES.items()}.get(name, name)
    return Target(name, family, options, TF_PREPROCESSING, source_name)


# --- reading ---------------------------------------------------------------------------


def read(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{"<layer>/<var>": array}`` from a Keras HDF5 weight file (legacy ``.h5`` or Keras 3 ``.weights.h5``).

    Keras 3 files name layers by class and order (``conv2d_3``); those keys are
    returned as ``"#conv2d/3/<var>"`` and matched to layer names by ``plan``.
    """
    try:
        import h5py
    except ImportError:
        raise ImportError("reading Keras weight files needs h5py: pip install 'mobilenets[convert]'") from None
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Keras weight file {path} does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(
            f"{path} is not a readable HDF5 file ({err}); it may be truncated or not a Keras file"
        ) from None
    out: dict[str, np.ndarray] = {}
    with f:
        try:
            root = f["model_weights"] if "model_weights" in f else f
            if "layer_names" in root.attrs:  # legacy h5: keras.applications downloads, Keras 2 save_weights
                for layer in root.attrs["layer_names"]:
                    layer = layer.decode() if isinstance(layer, bytes) else str(layer)
                    group = root[layer]
                    for weight in group.attrs.get("weight_names", []):
                        weight = weight.decode() if isinstance(weight, bytes) else str(weight)
                        var = weight.rsplit("/", 1)[-1].split(":")[0].replace("depthwise_kernel", "kernel")
                        out[f"{layer}/{var}"] = np.asarray(group[weight])
            elif "layers" in root:  # Keras 3 .weights.h5
                for layer, group in root["layers"].items():
                    match = re.fullmatch(r"(.*?)(?:_(\d+))?", layer)
                    cls, index = match.group(1), int(match.group(2) or 0)
                    if cls not in _VAR_NAMES or "vars" not in group:
                        if "vars" in group and len(group["vars"]):
                            raise ValueError(f"{path} has weights for a {cls!r} layer, which Keras MobileNets lack")
                        continue
                    for i, value in group["vars"].items():
                        out[f"#{cls}/{index}/{_VAR_NAMES[cls][int(i)]}"] = np.asarray(value)
            else:
                raise ValueError(f"{path} is an HDF5 file but not a Keras weight file (no layer_names, no layers/)")
        except (KeyError, OSError) as err:
            raise ValueError(f"{path} is not a readable Keras weight file ({err}); it may be truncated") from None
    if not out:
        raise ValueError(f"{path} holds no weights")
    return out


def classifier_key(tensors: dict, target: Target) -> str | None:
    """Key of the classifier kernel (``None`` for a file saved with ``include_top=False``)."""
    name = {"mobilenet_v1": "conv_preds", "mobilenet_v2": "predictions", "mobilenet_v3": "logits"}[target.family]
    if not any(k.startswith("#") for k in tensors):
        return f"{name}/kernel" if f"{name}/kernel" in tensors else None
    # Keras 3 file: the classifier is the layer after those of a headless network
    headless = _build(target.build(0), target, False)
    cls = "dense" if target.family == "mobilenet_v2" else "conv2d"
    key = f"#{cls}/{sum(c == cls for _, c in headless.layers)}/kernel"
    return key if key in tensors else None


# --- layouts -------------------------------------------------------------------------------


def _conv(t: torch.Tensor) -> torch.Tensor:  # HWIO -> OIHW
    return t.permute(3, 2, 0, 1)


def _depthwise(t: torch.Tensor) -> torch.Tensor:  # HWC1 -> C1HW
    return t.permute(2, 3, 0, 1)


def _linear(t: torch.Tensor) -> torch.Tensor:  # Dense (in, out) or 1x1 conv (1, 1, in, out) -> (out, in)
    return t.reshape(-1, t.shape[-1]).t()


def _drop_background(fn):
    """A 1001-class TF head: drop output 0 (background) so indices match the 1000 ImageNet classes."""
    return lambda t: fn(t)[1:]


_BN = (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"), ("running_var", "moving_variance"))


class _Plan:
    def __init__(self):
        self.steps: list[Copy] = []
        self.layers: list[tuple[str, str]] = []  # (layer name, keras class) in model order

    def layer(self, name: str, cls: str, copies: list[tuple[str, str, object]]):
        self.layers.append((name, cls))
        self.steps += [Copy(ours, f"{name}/{var}", fn) for ours, var, fn in copies]

    def cna(self, ours: str, conv: str, bn: str, depthwise: bool = False):
        cls = "depthwise_conv2d" if depthwise else "conv2d"
        self.layer(conv, cls, [(f"{ours}.conv.weight", "kernel", _depthwise if depthwise else _conv)])
        self.layer(bn, "batch_normalization", [(f"{ours}.bn.{p}", v, None) for p, v in _BN])
        self.steps.append(Copy(f"{ours}.bn.num_batches_tracked", f"{bn}/num_batches_tracked", optional=True))

    def classifier(self, name: str, cls: str, drop_background: bool):
        kernel = _drop_background(_linear) if drop_background else _linear
        bias = _tail if drop_background else None
        self.layer(name, cls, [("classifier.weight", "kernel", kernel), ("classifier.bias", "bias", bias)])

    def dense(self, ours: str, name: str, cls: str, fn):
        self.layer(name, cls, [(f"{ours}.weight", "kernel", fn), (f"{ours}.bias", "bias", None)])


def plan(model: nn.Module, target: Target, keys: set[str], drop_background: bool = False) -> list[Copy]:
    p = _build(model, target, drop_background)
    if any(k.startswith("#") for k in keys):  # Keras 3 file: layer names are "<class>_<k>" in model order
        counters: dict[str, int] = {}
        rename = {}
        for name, cls in p.layers:
            rename[name] = f"#{cls}/{counters.get(cls, 0)}"
            counters[cls] = counters.get(cls, 0) + 1
        return [replace(s, source=rename[s.source.split("/")[0]] + "/" + s.source.split("/")[1]) for s in p.steps]
    return p.steps


def _build(model: nn.Module, target: Target, drop_background: bool) -> _Plan:
    check_block_kinds(model, (DepthwiseSeparable, InvertedResidual), SOURCE)
    p = _Plan()
    family = target.family
    if family == "mobilenet_v1":
        p.cna("stem", "conv1", "conv1_bn")
        for i, (ours, _) in enumerate(block_list(model), start=1):
            p.cna(f"{ours}.dw", f"conv_dw_{i}", f"conv_dw_{i}_bn", depthwise=True)
            p.cna(f"{ours}.pw", f"conv_pw_{i}", f"conv_pw_{i}_bn")
        if model.num_classes:
            p.classifier("conv_preds", "conv2d", drop_background)
    elif family == "mobilenet_v2":
        p.cna("stem", "Conv1", "bn_Conv1")
        for i, (ours, block) in enumerate(block_list(model)):
            prefix = f"block_{i}_" if i else "expanded_conv_"
            if block.has_expand:
                p.cna(f"{ours}.expand", f"{prefix}expand", f"{prefix}expand_BN")
            p.cna(f"{ours}.dw", f"{prefix}depthwise", f"{prefix}depthwise_BN", depthwise=True)
            p.cna(f"{ours}.project", f"{prefix}project", f"{prefix}project_BN")
        p.cna("final_conv", "Conv_1", "Conv_1_bn")
        if model.num_classes:
            p.classifier("predictions", "dense", drop_background)
    else:
        p.cna("stem", "conv", "conv_bn")
        for i, (ours, block) in enumerate(block_list(model)):
            prefix = f"expanded_conv_{i}_" if i else "expanded_conv_"
            if block.has_expand:
                p.cna(f"{ours}.expand", f"{prefix}expand", f"{prefix}expand_bn")
            p.cna(f"{ours}.dw", f"{prefix}depthwise", f"{prefix}depthwise_bn", depthwise=True)
            if not isinstance(block.se, nn.Identity):
                for fc, name in (("fc1", "squeeze_excite_conv"), ("fc2", "squeeze_excite_conv_1")):
                    p.layer(f"{prefix}{name}", "conv2d", [(f"{ours}.se.{fc}.weight", "kernel", _conv),
                                                          (f"{ours}.se.{fc}.bias", "bias", None)])  # fmt: skip
            p.cna(f"{ours}.project", f"{prefix}project", f"{prefix}project_bn")
        p.cna("final_conv", "conv_1", "conv_1_bn")
        p.dense("pre_logits.0", "conv_2", "conv2d", _linear)
        if model.num_classes:
            p.classifier("logits", "conv2d", drop_background)
    return p


def _tail(t: torch.Tensor) -> torch.Tensor:
    return t[1:]
