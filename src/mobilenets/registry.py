"""Named variants (``mobilenet_v2_140``...), their builders, and the figures published for them."""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from .errors import UsageError


@dataclass(frozen=True)
class Published:
    """A params/MAdds figure as a source printed it, and the counting convention it used.

    Figures are strings as printed ("4.2M", "569M", "3,504,872"): a figure is met by
    any count that rounds to it (truncates to it, for sources that truncate), or
    lies within ``tolerance`` of it.

    ``num_classes``, ``count_bn``, ``count_classifier`` and ``classifier_bias``
    describe how the source counted; ``options`` rebuild the variant the source
    describes when it differs from ours (e.g. the V3-Small 1280 head of the paper's
    Table 2). ``erratum`` explains a figure no consistent count reproduces; the
    test then checks ``corrected_params`` / ``corrected_madds`` instead.
    """

    source: str
    params: str | None = None
    madds: str | None = None
    resolution: int | str = 224  # or "HxW" (P-V3 Table 7: "1024x2048")
    top1: float | None = None
    num_classes: int = 1000
    count_bn: bool = True
    count_classifier: bool = True
    classifier_bias: bool = True
    options: dict = field(default_factory=dict)
    note: str = ""
    erratum: str = ""
    corrected_params: str | None = None
    corrected_madds: str | None = None
    tolerance: float = 0.01
    truncated: bool = False  # the source cut digits off instead of rounding (3.47M printed as 3.4M)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    fixed: dict  # builder arguments that define the variant
    published: tuple[Published, ...] = ()
    description: str = ""
    task: str = "classification"  # what the model predicts: "classification" or "segmentation"


_REGISTRY: dict[str, ModelEntry] = {}


def register(
    name: str,
    builder: Callable[..., nn.Module],
    fixed: dict,
    published: list[Published] | tuple[Published, ...] = (),
    description: str = "",
    task: str = "classification",
) -> None:
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    _REGISTRY[name] = ModelEntry(name, builder, dict(fixed), tuple(published), description, task)


def _load_families() -> None:
    # Importing the model modules runs their register() calls.
    from .models import mobilenet_v1, mobilenet_v2, mobilenet_v3, segmentation, shufflenet_v1  # noqa: F401


def list_models(pattern: str = "*", task: str | None = None) -> list[str]:
    """Registered names matching a shell-style ``pattern`` (``"mobilenet_v3_*"``), of one ``task`` if given."""
    _load_families()
    return sorted(n for n, e in _REGISTRY.items() if fnmatch.fnmatchcase(n, pattern) and task in (None, e.task))


def get_entry(name: str) -> ModelEntry:
    _load_families()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        # A ValueError, not a KeyError: a mistyped name is the user's mistake, a KeyError would be our bug.
        tasks = sorted({e.task for e in _REGISTRY.values()}, key=lambda t: t != "classification")
        families = [f"{', '.join(sorted({e.builder.__name__ for e in _REGISTRY.values() if e.task == t}))} ({t})"
                    for t in tasks]  # fmt: skip
        raise UsageError(f"unknown model {name!r}; {hint}valid names start with {', '.join(families)} "
                         f"(`mobilenets list` shows all {len(_REGISTRY)})")  # fmt: skip
    return _REGISTRY[name]


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
    **variant_options,
) -> nn.Module:
    """Build a registered model.

    ``variant_options`` override the builder arguments that define the variant
    (``width_mult``, ``groups``, ``shuffle``, ``output_stride``, ...); an argument the builder
    does not take is an error that lists the ones it does. ``features_only`` returns the
    backbone as a ``FeatureNetwork`` whose forward gives the feature maps of ``out_indices``
    (indices into ``level_features()``: one per reduction, 2 to 32), as timm's does.
    ``num_classes`` defaults to the variant's (1000 for ImageNet classifiers, 19 for Cityscapes segmenters).
    """
    entry = get_entry(name)
    accepted = inspect.signature(entry.builder).parameters
    unknown = sorted(set(variant_options) - set(accepted))
    if unknown:
        raise UsageError(f"{name} does not take {unknown}; it takes: {', '.join(accepted)}")
    options = {**entry.fixed, **variant_options, "in_chans": in_chans}
    for key, value in (
        ("num_classes", num_classes),
        ("drop_rate", drop_rate),
        ("bn_eps", bn_eps),
        ("bn_momentum", bn_momentum),
        ("padding", padding),
    ):
        if value is not None:
            options[key] = value
    model = entry.builder(**options)
    model.name = name
    if features_only:
        from .models.net import FeatureNetwork

        return FeatureNetwork(model, out_indices)
    return model
