"""Named variants (``mobilenet_v2_140``...), their builders, and the figures published for them."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from .errors import UsageError


@dataclass(frozen=True)
class Published:
    """A params/MAdds figure as a source printed it, and the counting convention it used.

    Figures are strings as printed ("4.2M", "569M", "3,504,872"): a rounded figure is
    met by any count that rounds to it (truncates to it, for sources that truncate),
    or lies within ``tolerance`` of it; an exact one ("3,504,872") only by that count.

    ``num_classes``, ``count_bn``, ``count_classifier`` and ``classifier_bias``
    describe how the source counted; ``options`` rebuild the variant the source
    describes when it differs from ours (e.g. the V3-Small 1280 head of the paper's
    Table 2). ``erratum`` explains a figure no consistent count reproduces; the
    test then checks ``corrected_params`` / ``corrected_madds`` instead.
    """

    source: str
    params: str | None = None
    madds: str | None = None
    resolution: int | str = 224  # or "HxW" (P-V3 Table 7: "1025x2049")
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
    task: str = "classification"  # what the model predicts: picks the training task, export outputs...


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


def registered_builders() -> dict[str, Callable[..., nn.Module]]:
    """The builders of every registered model, by their name (a config.json's ``family``)."""
    return {e.builder.__name__: e.builder for e in _REGISTRY.values()}


def list_models(pattern: str = "*", task: str | None = None) -> list[str]:
    """Registered names matching a shell-style ``pattern`` (``"mobilenet_v3_*"``), of one ``task`` if given."""
    return sorted(n for n, e in _REGISTRY.items() if fnmatch.fnmatchcase(n, pattern) and task in (None, e.task))


def get_entry(name: str) -> ModelEntry:
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
