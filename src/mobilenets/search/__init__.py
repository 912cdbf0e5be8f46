"""Architecture search after training: NetAdapt (widths for a latency target measured on the user's runtime).

``plan.py``: width plans over spec lists and L2-norm narrowing; ``latency.py``: block-level
latency tables on a runtime, calibration, whole-network timing; ``netadapt.py``: the loop, the
uniform-width baselines, the finish and the Pareto plot.
"""

__all__ = ["AdaptConfig", "Layout", "SearchSettings", "WidthPlan", "adapt", "narrow", "search"]

_LAZY = {"AdaptConfig": ".netadapt", "SearchSettings": ".netadapt", "adapt": ".netadapt", "search": ".netadapt",
         "Layout": ".plan", "WidthPlan": ".plan", "narrow": ".plan"}  # fmt: skip


def __getattr__(name: str):
    # Lazy: the CLI reads latency.RUNTIMES while building its parser.
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name], __name__), name)
