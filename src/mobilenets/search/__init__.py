"""Architecture search after training: NetAdapt (widths for a latency target measured on the user's runtime).

``plan.py``: the narrower widths a slot may take (the width plans and L2-norm narrowing themselves
are ``models.width``); ``latency.py``: block-level latency tables on a runtime, calibration,
whole-network timing; ``netadapt.py``: the loop, the uniform-width baselines, the finish and the
Pareto plot.
"""

__all__ = ["AdaptConfig", "Layout", "SearchSettings", "WidthPlan", "adapt", "narrow", "search"]

_LAZY = {"AdaptConfig": ".netadapt", "SearchSettings": ".netadapt", "adapt": ".netadapt", "search": ".netadapt",
         "Layout": "..models.width", "WidthPlan": "..models.width", "narrow": "..models.width"}  # fmt: skip


def __getattr__(name: str):
    # Lazy: the CLI reads latency.RUNTIMES while building its parser.
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name], __name__), name)
