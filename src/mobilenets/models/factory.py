"""``create_model``: a registered name (or shipped weights NAME.TAG) -> a model, built by ``models.build``."""

from __future__ import annotations

from torch import nn

from ..errors import UsageError
from ..io import load_pretrained
from ..pretrained import available
from ..registry import get_entry
from .build import build, build_from_config, check_sizes

__all__ = ["build", "build_from_config", "check_sizes", "create_model"]  # the first three: models.build's


def _pretrained(name: str, tag: str | bool, in_chans: int, given: list[str]) -> nn.Module:
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
