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


def write_curves(out: Path, history: list[dict], metric: str, label: str, split: str = "val") -> Path | None:
    """curves.png: loss and the task's ``metric`` per epoch, on the training data and on the held-out ``split``
    (the split the epochs were evaluated on: "test" where the data has no validation split).

    Every epoch is a marker, so that one epoch is a point and not an empty panel; a held-out loss is drawn
    only where the evaluation computed one (the dense tasks score their split without a loss).
    """
    plt = pyplot()
    if plt is None or not history:
        return None
    fig = curves_figure(plt, history, metric, label, split)
    curves = out / "curves.png"
    atomic_write(curves, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return curves


def curves_figure(plt, history: list[dict], metric: str, label: str, split: str = "val"):
    """The figure of ``write_curves``."""
    from matplotlib.ticker import MaxNLocator

    held_out = f"{split} (held out)"
    epochs = [r["epoch"] for r in history]
    # a marker per epoch while they can be told apart, else on the last epoch only
    marks = {"markevery": None if len(epochs) <= 30 else [len(epochs) - 1], "ms": 5}
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], "o-", label="train", **marks)
    if any(r.get("val_loss") is not None for r in history):
        ax_loss.plot(epochs, [r.get("val_loss") for r in history], "s-", label=held_out, **marks)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    if f"train_{metric}" in history[0]:
        ax_metric.plot(epochs, [r[f"train_{metric}"] for r in history], "o-", label="train", **marks)
    ax_metric.plot(epochs, [r.get(f"val_{metric}") for r in history], "s-", color="C1", label=held_out, **marks)
    ax_metric.set(xlabel="epoch", ylabel=label, title=f"{label} on {split}")
    for ax in (ax_loss, ax_metric):
        ax.margins(y=0.12)  # room above and below for a value moved off its neighbour
        ax.get_ylim()  # settle the autoscaled limits, so that data maps to final display pixels
        placed: list[float] = []
        for line in ax.get_lines():  # the last value of each curve, written beside its last point
            x, y = line.get_xdata()[-1], line.get_ydata()[-1]
            if y is None:
                continue
            pixel_y = ax.transData.transform((x, y))[1]
            shift = 0.0
            while any(abs(pixel_y + shift - p) < 13 for p in placed):  # two close values: one above the other
                shift += 13 if pixel_y >= min(placed) else -13
            placed.append(pixel_y + shift)
            ax.annotate(f"{y:.4g}", (x, y), xytext=(6, shift * 72 / fig.dpi), textcoords="offset points",
                        va="center", color=line.get_color(), fontsize=9)  # fmt: skip
        span = max(epochs) - min(epochs)  # room on the right for those values; one epoch is not a sliver
        ax.set_xlim(min(epochs) - max(0.5, 0.03 * span), max(epochs) + max(1.0, 0.15 * span))
        if max(epochs) - min(epochs) < 12:  # whole epochs only: no "epoch 1.5"
            ax.set_xticks(range(min(epochs), max(epochs) + 1))
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


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


def write_report(out: Path, summary: dict, title: str, headline: list[str], history: list[dict],
                 pictures: list[Path]) -> Path:  # fmt: skip
    """A finished run's report, for every task: ``report.json`` (the summary) and ``report.md`` (headline bullets,
    the per-epoch table, the pictures)."""
    import json

    atomic_write_text(out / "report.json", json.dumps(summary, indent=1) + "\n")
    return write_markdown(out, title, headline, history, pictures)
