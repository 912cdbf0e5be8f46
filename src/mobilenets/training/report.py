"""The parts of a run's report every task shares: the curves PNG and report.md with the per-epoch table."""

from __future__ import annotations

import logging
from pathlib import Path

from ..io import atomic_write, atomic_write_text

log = logging.getLogger(__name__)


def pyplot():
    """matplotlib's pyplot on the Agg backend, or None (with a warning) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no PNG report (pip install 'mobilenets[train]')")
        return None
    return plt


def write_curves(out: Path, history: list[dict], metric: str, label: str) -> Path | None:
    """curves.png: loss, and the task's ``metric``, for train and val per epoch."""
    plt = pyplot()
    if plt is None or not history:
        return None
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], label="train")
    ax_loss.plot(epochs, [r.get("val_loss") for r in history], label="val")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    if f"train_{metric}" in history[0]:
        ax_metric.plot(epochs, [r[f"train_{metric}"] for r in history], label="train")
    ax_metric.plot(epochs, [r.get(f"val_{metric}") for r in history], label="val")
    ax_metric.set(xlabel="epoch", ylabel=label, title=label)
    for ax in (ax_loss, ax_metric):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    curves = out / "curves.png"
    atomic_write(curves, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return curves


def write_markdown(out: Path, title: str, headline: list[str], history: list[dict], pictures: list[Path]) -> Path:
    """report.md: the headline bullets, one table row per epoch (every logged column), the pictures."""
    keys = [k for k in dict.fromkeys(k for row in history for k in row) if k != "step"]
    lines = [f"# {title}", "", *headline, "", "| " + " | ".join(k.replace("_", " ") for k in keys) + " |",
             "|" + "---|" * len(keys)]  # fmt: skip
    for row in history:
        lines.append("| " + " | ".join(_cell(row.get(k, "")) for k in keys) + " |")
    lines += ["", *(f"![{p.stem}]({p.name})" for p in pictures)]
    return atomic_write_text(out / "report.md", "\n".join(lines) + "\n")


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"
    return str(value)
