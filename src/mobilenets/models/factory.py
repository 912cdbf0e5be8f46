"""The one way any model is built from options: registry names, model directories and converters all come here."""

from __future__ import annotations

import inspect

from torch import nn

from ..errors import UsageError
from ..registry import get_entry


def family_builder(family: str):
    """The builder of a model family (``mobilenet_v3``, ``ssdlite``...), found in ``mobilenets.models``."""
    from .. import models

    builder = getattr(models, family, None) if family in models.FAMILIES else None
    if builder is None:  # a family registered by a task's own files (a plugin); still only code we imported
        from ..registry import registered_builders

        builder = registered_builders().get(family)
    if builder is None:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(sorted(models.FAMILIES))}")
    return builder


# Channel counts are bounded before anything is allocated: 16384 holds every family at the largest
# width multiplier (MAX_WIDTH_MULT 10: ShuffleNet g=8's 15360); a larger one is a typo that would ask
# for gigabytes. Classes: ImageNet-21k's 21843 fits.
MAX_CHANNELS = 16384
MAX_CLASSES = 100_000
SIZE_OPTIONS = {"num_classes": (0, MAX_CLASSES), "in_chans": (1, MAX_CHANNELS), "num_features": (1, MAX_CHANNELS),
                "stem_chs": (1, MAX_CHANNELS), "head_chs": (0, MAX_CHANNELS),
                "detections_per_img": (1, MAX_CLASSES)}  # fmt: skip
BLOCK_SIZES = {"in_chs": (1, MAX_CHANNELS), "out_chs": (1, MAX_CHANNELS), "exp_chs": (0, MAX_CHANNELS),
               "se_chs": (0, MAX_CHANNELS)}  # fmt: skip


def _check_size(name: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UsageError(f"{name} must be a whole number in [{low}, {high}], got {value!r}")


def check_sizes(options: dict) -> None:
    """Channel counts and class counts (the options that size weight tensors) in range, before building."""
    for key, (low, high) in SIZE_OPTIONS.items():
        value = options.get(key)
        if value is None or (key in ("num_classes", "in_chans") and not (isinstance(value, int) and value > high)):
            continue  # the builders' check_common names the type and lower bound they take
        _check_size(key, value, low, high)
    blocks = options.get("blocks")
    if blocks is None:
        return
    if not isinstance(blocks, list):
        raise UsageError(f"blocks must be a list of block specs (objects), got {blocks!r:.80}")
    for i, block in enumerate(blocks):
        if not isinstance(block, dict):
            raise UsageError(f"blocks[{i}] must be a block spec (an object with kind, in_chs, out_chs, stage), "
                             f"got {block!r:.80}")  # fmt: skip
        for key, (low, high) in BLOCK_SIZES.items():
            if key in block:
                _check_size(f"blocks[{i}].{key}", block[key], low, high)


def build(family: str, options: dict, name: str | None = None) -> nn.Module:
    """``family``'s builder called with ``options``; an option it does not take is an error that lists them."""
    builder = family_builder(family)
    accepted = inspect.signature(builder).parameters
    if not isinstance(options, dict):
        raise UsageError(f"{name or family}'s options must be a mapping of option names to values, got {options!r}")
    unknown = sorted(set(options) - set(accepted))
    if unknown:  # a hand-edited or newer config, or a typo: a clear error, not a TypeError from the builder
        raise UsageError(f"{name or family} does not take {unknown}; it takes: {', '.join(accepted)}")
    check_sizes(options)
    model = builder(**options)
    model.name = name or family
    return model


def build_from_config(config: dict) -> nn.Module:
    """An untrained model with the architecture a config (``model.config``, config.json) describes."""
    for key in ("family", "options"):
        if key not in config:
            raise ValueError(f"a model config needs {key!r}; got keys {sorted(config)}")
    return build(config["family"], config["options"], config.get("name"))


def _pretrained(name: str, tag: str | bool, in_chans: int, given: list[str]) -> nn.Module:
    from ..pretrained import available, load_pretrained

    if tag is True:
        tags = [key.partition(".")[2] for key in available() if key.partition(".")[0] == name]
        tag = tags[0] if tags else "fashion-mnist"  # load_pretrained names what is shipped
    model = load_pretrained(name, tag)
    if given or in_chans not in (3, model.in_chans):
        extra = ", ".join(given) if given else f"in_chans={in_chans}"
        raise UsageError(f"{name}.{tag} fixes its architecture ({model.in_chans}-channel input, "
                         f"{model.num_classes} classes); drop {extra}, or fine-tune it with "
                         f"`mobilenets train --init {name}.{tag}`")  # fmt: skip
    return model


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_chans: int = 3,
    drop_rate: float | None = None,
    bn_eps: float | None = None,
    bn_momentum: float | None = None,
    padding: str | None = None,
    features_only: bool = False,
    out_indices: tuple[int, ...] | None = None,
    pretrained: str | bool | None = None,
    **variant_options,
) -> nn.Module:
    """Build a registered model.

    ``pretrained``: a tag of weights shipped with the package (``mobilenets list --pretrained``;
    True: the name's first tag), loaded with their own architecture options, labels and preprocessing.

    ``variant_options`` override the builder arguments that define the variant
    (``width_mult``, ``groups``, ``shuffle``, ``output_stride``, ...); an argument the builder
    does not take is an error that lists the ones it does. ``features_only`` returns the
    backbone as a ``FeatureNetwork`` whose forward gives the feature maps of ``out_indices``
    (indices into ``level_features()``: one per reduction, 2 to 32), as timm's does.
    ``num_classes`` defaults to the builder's (1000 for classifiers, 91 for COCO detectors, 19 for segmenters).
    """
    entry = get_entry(name)
    if pretrained:
        given = {"num_classes": num_classes, "drop_rate": drop_rate, "bn_eps": bn_eps, "bn_momentum": bn_momentum,
                 "padding": padding, "out_indices": out_indices, **variant_options}  # fmt: skip
        given = [k for k, v in given.items() if v is not None] + (["features_only"] if features_only else [])
        return _pretrained(name, pretrained, in_chans, given)
    options = {**entry.fixed, **variant_options, "in_chans": in_chans}
    if num_classes is not None:
        options["num_classes"] = num_classes
    for key, value in (
        ("num_classes", num_classes),
        ("drop_rate", drop_rate),
        ("bn_eps", bn_eps),
        ("bn_momentum", bn_momentum),
        ("padding", padding),
    ):
        if value is not None:
            options[key] = value
    model = build(entry.builder.__name__, options, name)
    if features_only:
        from .net import FeatureNetwork

        if entry.task != "classification":
            raise UsageError(f"{name} is a {entry.task} model; features_only takes a backbone's name "
                             "(e.g. mobilenet_v3_large_100)")  # fmt: skip
        return FeatureNetwork(model, out_indices)
    return model
