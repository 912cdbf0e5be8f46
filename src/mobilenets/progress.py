"""Progress bars for the long commands: tqdm on stderr, off with ``--quiet`` or when stderr is not a terminal.

One helper for every loop that can run for more than a few seconds (training steps, evaluation
batches, quantization's evaluation images, benchmark rounds), so that they all follow the same
rules: a bar never reaches a pipe or a log file, ``mobilenets --quiet`` turns every bar off,
and without tqdm (an optional dependency: ``pip install 'mobilenets[train]'``) loops just run.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

_quiet = False  # set by the CLI's --quiet for the whole process


def set_quiet(quiet: bool) -> None:
    """Turn every progress bar of this process off (``--quiet``) or back to automatic."""
    global _quiet
    _quiet = bool(quiet)


def enabled(requested: bool | None = None) -> bool:
    """Whether to draw a bar: never with --quiet or ``requested=False``; with None, only when stderr is a terminal."""
    if _quiet or requested is False:
        return False
    if requested is None:
        isatty = getattr(sys.stderr, "isatty", None)
        return bool(isatty and isatty())
    return True


def _tqdm():
    try:
        from tqdm import tqdm
    except ImportError:
        log.debug("tqdm is not installed: no progress bars (pip install 'mobilenets[train]')")
        return None
    return tqdm


def progress(
    iterable: Iterable[T],
    desc: str | None = None,
    *,
    enabled: bool | None = None,
    total: int | None = None,
    unit: str = "it",
) -> Iterable[T]:
    """``iterable`` with a bar on stderr when ``enabled(enabled)``; otherwise ``iterable`` itself."""
    tqdm = _tqdm() if _enabled(enabled) else None
    if tqdm is None:
        return iterable
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, file=sys.stderr, dynamic_ncols=True)


class _NoBar:
    """Stands in for a tqdm bar when bars are off: the same calls, doing nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __iter__(self) -> Iterator[Any]:
        return iter(())


def bar(total: int, desc: str | None = None, *, enabled: bool | None = None, initial: int = 0, unit: str = "it"):
    """A manual bar (``update``, ``set_postfix``, ``close``) for loops that are not one iterable; a no-op when off."""
    tqdm = _tqdm() if _enabled(enabled) else None
    if tqdm is None:
        return _NoBar()
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=False, file=sys.stderr, dynamic_ncols=True)


_enabled = enabled  # the module function, for the helpers whose ``enabled`` argument shadows it
