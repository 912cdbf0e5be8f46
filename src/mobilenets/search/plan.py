"""NetAdapt's moves over width plans: the narrower widths a slot may take.

The plans themselves (slots, layouts, ``WidthPlan``) and L2-norm narrowing live in ``models.width``,
below the tasks that use them too; their names stay importable from here.
"""

from __future__ import annotations

from ..models.width import (
    FAMILIES,
    STEP,
    ChannelMap,
    Entry,
    Layout,
    Slot,
    WidthPlan,
    channel_norms,
    kept_channels,
    narrow,
    se_width,
)

__all__ = ["FAMILIES", "STEP", "ChannelMap", "Entry", "Layout", "Slot", "WidthPlan", "candidate_widths",
           "channel_norms", "kept_channels", "narrow", "se_width"]  # fmt: skip


def candidate_widths(plan: WidthPlan, layout: Layout, slot: Slot) -> list[tuple[int, WidthPlan]]:
    """The narrower widths of ``slot`` (multiples of 8, down to 8) that keep the structure, widest first."""
    width = plan.get(slot)
    out = []
    for w in range((width - 1) // STEP * STEP, STEP - 1, -STEP):
        candidate = plan.with_width(slot, w)
        if candidate.problem(layout) is None:
            out.append((w, candidate))
    return out
