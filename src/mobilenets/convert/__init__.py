"""Load torchvision, timm, Keras and megvii checkpoints into our models (spec §3-4).

``convert_checkpoint`` returns a model whose outputs match the source library's
(same padding, BN eps, head and channel order), carrying the preprocessing its
weights expect; ``convert`` also writes it as a model directory, atomically.
Nothing is written unless the whole checkpoint fits the named model.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import ModuleType

from torch import nn

from ._common import Target, apply_plan, infer_num_classes, read_torch_checkpoint

log = logging.getLogger(__name__)

SOURCES = ("torchvision", "timm", "keras", "megvii")


def _module(source: str) -> ModuleType:
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; valid: {', '.join(SOURCES)}")
    from importlib import import_module

    return import_module(f"mobilenets.convert.from_{source}")


def source_models(source: str) -> list[str]:
    """The model names ``convert_checkpoint`` accepts for ``source`` (aliases included)."""
    module = _module(source)
    return sorted(module.TARGETS) + sorted(getattr(module, "ALIASES", {}))


def resolve(source: str, model: str) -> Target:
    """Our network, options and preprocessing for ``model`` as named in ``source`` (or our registry name)."""
    module = _module(source)
    if source == "torchvision":
        key = module.ALIASES.get(model, model)
        if key in module.TARGETS:
            return module.TARGETS[key]
    elif source == "keras":
        name = module.ALIASES.get(model, model)
        if name in module.TARGETS:
            return module.target(name)
    else:
        if model in module.TARGETS:
            return module.target(model)
        if source == "timm" and model.split(".")[0] in module.TARGETS:  # a pretrained tag: name.tag
            return module.target(model.split(".")[0])
        if source == "timm" and model in module.UNSUPPORTED:
            raise ValueError(f"timm's {model} cannot be converted: {module.UNSUPPORTED[model]}")
    raise ValueError(f"{source} model {model!r} is not supported; valid: {', '.join(source_models(source))}")


def torchvision_categories(weights: str) -> list[str]:
    """Class names from torchvision's public weights metadata (``Weights.meta["categories"]``): ImageNet-1k's
    1000 in synset order for any ImageNet weights, COCO's 91 (background and the unused ids as "N/A") for
    the detectors. Nothing is downloaded."""
    from torchvision.models import get_weight

    return list(get_weight(weights).meta["categories"])


def _labels(labels: list[str] | str | None, num_classes: int) -> list[str] | None:
    if labels is None or labels == "none":
        return None
    if labels == "auto":  # 1000 classes from these sources are ImageNet-1k in the usual synset order
        labels = "imagenet" if num_classes == 1000 else None
        if labels is None:
            return None
    if labels == "imagenet":
        labels = torchvision_categories("MobileNet_V3_Large_Weights.IMAGENET1K_V1")
    elif isinstance(labels, str | os.PathLike):
        path = Path(labels)
        if not path.is_file():
            raise FileNotFoundError(f"labels file {path} does not exist (give one label per line, or 'imagenet')")
        labels = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    labels = list(labels)
    if len(labels) != num_classes:
        raise ValueError(f"{len(labels)} labels given for a checkpoint with {num_classes} classes")
    return labels


def convert_checkpoint(
    path: str | os.PathLike,
    source: str,
    model: str,
    *,
    num_classes: int | None = None,
    labels: list[str] | str | None = "auto",
    keep_background: bool = False,
) -> nn.Module:
    """Build ``model`` (as named in ``source``) and fill it from the checkpoint at ``path``.

    ``num_classes`` defaults to the checkpoint's; a different value is an error naming
    the classifier's shapes. A 1001-class TF head loses its background class (output 0)
    unless ``keep_background``. ``labels``: a list, a file with one label per line,
    ``"imagenet"``, ``"none"``, or ``"auto"`` (ImageNet names for 1000 classes).
    Returns the model in eval mode, with ``preprocessing``, ``labels`` and ``metadata`` set.
    """
    target = resolve(source, model)
    module = _module(source)
    path = Path(path)
    drop_background = False
    if source == "keras":
        tensors = module.read(path)
        key = module.classifier_key(tensors, target)
        found = 0 if key is None else int(tensors[key].shape[-1])
        if found == 1001 and not keep_background and num_classes in (None, 1000):
            drop_background, found = True, 1000
            log.info("dropping the background class (output 0) of the 1001-class TF head")
    else:
        tensors = read_torch_checkpoint(path)
        key = {"torchvision": lambda: module.classifier_key(target), "timm": lambda: "classifier.weight",
               "megvii": lambda: "classifier.0.weight"}[source]()  # fmt: skip
        found = infer_num_classes(tensors, key)
        if target.family == "ssdlite":
            found = module.detector_classes(tensors, target)
        if found == 0 and target.family == "lraspp":  # a segmenter has no headless variant to fall back on
            raise ValueError(f"{path} has no {key!r}; is it a torchvision {target.source_name} state dict?")
    classes = found if num_classes is None else num_classes
    net = target.build(classes)
    keys = set(tensors)
    steps = module.plan(net, target, keys, drop_background) if source == "keras" else module.plan(net, target, keys)
    apply_plan(net, tensors, steps, where=str(path), what=f"{source} {target.source_name or model} checkpoint")
    net.preprocessing = target.preprocessing
    if labels == "auto" and target.family == "ssdlite" and classes == 91:  # COCO's 90 ids + background
        labels = torchvision_categories("SSDLite320_MobileNet_V3_Large_Weights.COCO_V1")
    net.labels = _labels(labels, classes)
    net.metadata = {"converted_from": {"source": source, "model": target.source_name or model, "file": path.name,
                                       "dropped_background_class": drop_background}}  # fmt: skip
    return net.eval()


def convert(
    path: str | os.PathLike,
    output: str | os.PathLike,
    source: str,
    model: str,
    *,
    num_classes: int | None = None,
    labels: list[str] | str | None = "auto",
    keep_background: bool = False,
    overwrite: bool = False,
) -> Path:
    """``convert_checkpoint`` then ``save_model`` to ``output`` (written whole or not at all).

    ``output`` must be new or empty, or a model directory with ``overwrite``.
    """
    from ..io import check_output, is_model_dir, save_model

    check_output(output, overwrite=overwrite, ours=is_model_dir)  # before the conversion's work

    net = convert_checkpoint(
        path, source, model, num_classes=num_classes, labels=labels, keep_background=keep_background
    )
    return save_model(net, output, overwrite=overwrite)


__all__ = ["SOURCES", "Target", "convert", "convert_checkpoint", "resolve", "source_models"]
