"""torchvision ``mobilenet_v2``, ``mobilenet_v3_large``, ``mobilenet_v3_small``, ``ssdlite320_mobilenet_v3_large``
and ``segmentation.lraspp_mobilenet_v3_large`` state dicts (spec §4.1-4.2, §4.9; LR-ASPP's ``backbone.N``
are the classifier's ``features.N``)."""

from __future__ import annotations

from torch import nn

from ..layers import InvertedResidual
from ..preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from ._common import IMAGENET_PREPROCESSING, Copy, Target, block_list, check_block_kinds, torch_bn, torch_cna

SOURCE = "torchvision"
CLASSIFIER_KEY = "classifier.{}.weight"


def _target(name: str, source_name: str, family: str, options: dict) -> Target:
    return Target(name, family, options, IMAGENET_PREPROCESSING, source_name)


# torchvision's V3 uses BN eps 1e-3 / momentum 0.01; V2 the PyTorch defaults. Padding is symmetric.
_V3_BN = {"bn_eps": 1e-3, "bn_momentum": 0.01}
TARGETS = {
    "mobilenet_v2": _target("mobilenet_v2_100", "mobilenet_v2", "mobilenet_v2", {"width_mult": 1.0}),
    "mobilenet_v3_large": _target("mobilenet_v3_large_100", "mobilenet_v3_large", "mobilenet_v3",
                                  {"size": "large", **_V3_BN}),
    "mobilenet_v3_small": _target("mobilenet_v3_small_100", "mobilenet_v3_small", "mobilenet_v3",
                                  {"size": "small", **_V3_BN}),
    # SSDLite: BN eps 1e-3 / momentum 0.03 and the reduced tail are the builder's defaults; 320x320, mean = std = 0.5.
    "ssdlite320_mobilenet_v3_large": Target("ssdlite320_mobilenet_v3_large", "ssdlite",
                                            {"backbone": "mobilenet_v3_large", "preset": "torchvision"},
                                            Preprocessing((320, 320), 320, mean=(0.5,) * 3, std=(0.5,) * 3),
                                            "ssdlite320_mobilenet_v3_large"),
    # torchvision's segmentation presets: resize to 520, ImageNet mean/std (VOC labels, 21 classes).
    "lraspp_mobilenet_v3_large": Target("lraspp_mobilenet_v3_large", "lraspp",
                                        {"backbone": "mobilenet_v3_large_100", "flavour": "torchvision"},
                                        Preprocessing((520, 520), 520, mean=IMAGENET_MEAN, std=IMAGENET_STD),
                                        "lraspp_mobilenet_v3_large"),
}  # fmt: skip
ALIASES = {t.name: key for key, t in TARGETS.items() if t.name != key}


def classifier_key(target: Target) -> str:
    if target.family == "ssdlite":  # its classes are the lowest class predictor's outputs / anchors there
        return "head.classification_head.module_list.0.1.bias"
    if target.family == "lraspp":
        return "classifier.low_classifier.weight"
    return "classifier.1.weight" if target.family == "mobilenet_v2" else "classifier.3.weight"


def lraspp_plan(model: nn.Module, keys: set[str]) -> list[Copy]:
    """torchvision's LRASPP: the V3 backbone plan with ``backbone.`` for ``features.``, then the head (spec §4.3)."""
    if model.options.get("flavour") != "torchvision":
        raise ValueError(f"{model.name} is the paper's LR-ASPP; torchvision checkpoints fit flavour='torchvision' "
                         "(--model lraspp_mobilenet_v3_large)")  # fmt: skip
    backbone = _target("backbone", "", "mobilenet_v3", {})
    steps = []
    for step in plan(model.backbone, backbone, keys):
        if step.ours.startswith("pre_logits."):  # the classifier's, absent from a segmentation backbone
            continue
        source = "backbone." + step.source[len("features.") :]
        steps.append(Copy(f"backbone.{step.ours}", source, step.transform, step.optional))
    steps += torch_cna("head.branch", "classifier.cbr.0", "classifier.cbr.1")
    steps.append(Copy("head.gate.weight", "classifier.scale.1.weight"))
    for ours, theirs in (
        ("head.high_classifier", "classifier.high_classifier"),
        ("head.low_classifier", "classifier.low_classifier"),
    ):
        steps += [Copy(f"{ours}.{p}", f"{theirs}.{p}") for p in ("weight", "bias")]  # fmt: skip
    return steps


def plan(model: nn.Module, target: Target, keys: set[str]) -> list[Copy]:
    if target.family == "ssdlite":
        return ssdlite_plan(model, target, keys)
    if target.family == "lraspp":
        return lraspp_plan(model, keys)
    check_block_kinds(model, (InvertedResidual,), SOURCE)
    steps = torch_cna("stem", "features.0.0", "features.0.1")
    blocks = block_list(model)
    for k, (ours, block) in enumerate(blocks):
        theirs = f"features.{k + 1}"
        if target.family == "mobilenet_v2":
            if block.has_expand:  # conv.0 expand, conv.1 dw, conv.2 project conv, conv.3 project BN
                steps += torch_cna(f"{ours}.expand", f"{theirs}.conv.0.0", f"{theirs}.conv.0.1")
                steps += torch_cna(f"{ours}.dw", f"{theirs}.conv.1.0", f"{theirs}.conv.1.1")
                steps += torch_cna(f"{ours}.project", f"{theirs}.conv.2", f"{theirs}.conv.3")
            else:  # t=1: conv.0 dw, conv.1 project conv, conv.2 project BN
                steps += torch_cna(f"{ours}.dw", f"{theirs}.conv.0.0", f"{theirs}.conv.0.1")
                steps += torch_cna(f"{ours}.project", f"{theirs}.conv.1", f"{theirs}.conv.2")
            continue
        index = 0  # V3: block.{i} numbers only the parts present
        if block.has_expand:
            steps += torch_cna(f"{ours}.expand", f"{theirs}.block.0.0", f"{theirs}.block.0.1")
            index += 1
        steps += torch_cna(f"{ours}.dw", f"{theirs}.block.{index}.0", f"{theirs}.block.{index}.1")
        index += 1
        if not isinstance(block.se, nn.Identity):
            for fc in ("fc1", "fc2"):
                steps += [Copy(f"{ours}.se.{fc}.{p}", f"{theirs}.block.{index}.{fc}.{p}") for p in ("weight", "bias")]
            index += 1
        steps += torch_cna(f"{ours}.project", f"{theirs}.block.{index}.0", f"{theirs}.block.{index}.1")
    head = f"features.{len(blocks) + 1}"
    steps += [Copy("final_conv.conv.weight", f"{head}.0.weight")] + torch_bn("final_conv.bn", f"{head}.1")
    if target.family == "mobilenet_v2":
        classifier = "classifier.1"
    else:
        steps += [Copy(f"pre_logits.0.{p}", f"classifier.0.{p}") for p in ("weight", "bias")]
        classifier = "classifier.3"
    if model.num_classes:
        steps += [Copy(f"classifier.{p}", f"{classifier}.{p}") for p in ("weight", "bias")]
    return steps


# --- ssdlite320_mobilenet_v3_large -------------------------------------------------------------
# torchvision splits its MobileNetV3 ``features`` at the C4 block (``SSDLiteFeatureExtractorMobileNet``):
# ``backbone.features.0`` = features[:c4] + the C4 block's expansion, ``backbone.features.1`` = the rest of
# the C4 block (keeping its ``block.{1,2,3}`` numbers) + features[c4 + 1:]. The classifier plan above is
# reused with its keys moved there.


def _ssdlite_key(key: str, c4: int) -> str:
    """A torchvision ``mobilenet_v3_large`` key as ``ssdlite320_mobilenet_v3_large`` stores it."""
    _, index, rest = key.split(".", 2)
    i = int(index)
    if i < c4:
        return f"backbone.features.0.{i}.{rest}"
    if i > c4:
        return f"backbone.features.1.{i - c4}.{rest}"
    if rest.startswith("block.0."):
        return f"backbone.features.0.{c4}.{rest[len('block.0.') :]}"
    return f"backbone.features.1.0.{rest[len('block.') :]}"


def detector_classes(tensors, target: Target) -> int:
    """Classes of an SSDLite checkpoint: the lowest class predictor's outputs over its boxes (6 per location)."""
    from ..models import ssdlite

    key = classifier_key(target)
    if key not in tensors:
        raise ValueError(f"this checkpoint has no {key!r}: it is not a torchvision {target.source_name} state dict "
                         "(a classifier's weights cannot be converted into a detector)")  # fmt: skip
    anchors = ssdlite(**target.options).num_anchors[0]
    return int(tensors[key].shape[0]) // anchors


def ssdlite_plan(model: nn.Module, target: Target, keys: set[str]) -> list[Copy]:
    network = model.backbone.network
    c4_tap = model.backbone.taps[0]
    c4 = 1 + [name for name, _ in block_list(network)].index(c4_tap.rsplit(".", 1)[0])
    classifier_target = Target(target.name, "mobilenet_v3", {}, target.preprocessing)
    steps = [
        Copy(f"backbone.network.{step.ours}", _ssdlite_key(step.source, c4), step.transform, step.optional)
        for step in plan(network, classifier_target, keys)
        if not step.ours.startswith(("pre_logits.", "classifier."))  # the detector has no classifier
    ]
    for i in range(len(model.extras)):
        for j, part in enumerate(("reduce", "dw", "expand")):
            steps += torch_cna(f"extras.{i}.{part}", f"backbone.extra.{i}.{j}.0", f"backbone.extra.{i}.{j}.1")
    for ours, theirs in (("box_head", "regression_head"), ("class_head", "classification_head")):
        for i in range(len(model.box_head)):
            source = f"head.{theirs}.module_list.{i}"
            steps += torch_cna(f"{ours}.{i}.dw", f"{source}.0.0", f"{source}.0.1")
            steps += [Copy(f"{ours}.{i}.pw.{p}", f"{source}.1.{p}") for p in ("weight", "bias")]
    return steps
