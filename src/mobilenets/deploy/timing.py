"""Interleaved (round-robin) wall-clock timing, shared by ``bench``, ``quantize`` and NetAdapt's latency tables.

Configurations are timed a slice each in turn, for several rounds, so that noise from other
processes on a shared machine falls on all of them alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def time_interleaved(
    runners: dict[str, Callable[[np.ndarray], object]],
    x: np.ndarray,
    *,
    warmup: int = 10,
    rounds: int = 5,
    round_seconds: float = 0.3,
    min_calls: int = 5,
    desc: str | None = None,
    progress: bool | None = None,
) -> dict[str, list[float]]:
    """Per-call wall times (s) of each runner, taken round-robin: ``rounds`` slices of ~``round_seconds`` each.

    ``progress``: a bar over the rounds (None: when stderr is a terminal), labelled ``desc``.
    """
    from ..progress import progress as with_bar

    for run in runners.values():
        for _ in range(warmup):
            run(x)
    times: dict[str, list[float]] = {key: [] for key in runners}
    for _ in with_bar(range(rounds), desc, enabled=progress, unit="round"):
        for key, run in runners.items():
            start_round = time.perf_counter()
            calls = 0
            while calls < min_calls or time.perf_counter() - start_round < round_seconds:
                start = time.perf_counter()
                run(x)
                times[key].append(time.perf_counter() - start)
                calls += 1
    return times


def summarize(samples: list[float]) -> tuple[float, float]:
    """(median, p90) in milliseconds."""
    values = np.asarray(samples) * 1e3
    return float(np.median(values)), float(np.percentile(values, 90))
