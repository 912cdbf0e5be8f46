"""End-of-run report: final evaluation of the best model, curves and confusion matrix as PNG, summary JSON."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..io import atomic_write, atomic_write_text, load_model

log = logging.getLogger(__name__)


def write_report(out: Path, spec, state, recipe, config, *, wall_seconds: float) -> dict:
    """Evaluate ``out/best`` on the validation split and write report.json, report.md and the PNGs."""
    from ..complexity import profile
    from .engine import BEST_DIR, evaluate_split

    model = load_model(out / BEST_DIR)
    metrics = evaluate_split(
        model,
        spec,
        spec.val,
        batch_size=256,
        channels_last=config.channels_last,
        bf16=config.bf16,
        workers=config.workers,
    )
    prof = profile(model, "x".join(map(str, spec.preprocessing.input_size)))
    summary = {
        "model": config.model,
        "data": config.data,
        "recipe": recipe.name,
        "epochs": state.epoch,
        "steps": state.step,
        "best_epoch": state.best_epoch,
        "val_split": spec.val.name,
        "top1": round(metrics["top1"], 3),
        "top5": round(metrics["top5"], 3),
        "loss": round(metrics["loss"], 5),
        "params": prof.params,
        "madds": prof.madds,
        "resolution": list(spec.preprocessing.input_size),
        "train_seconds": round(state.train_seconds, 1),
        "wall_seconds_this_invocation": round(wall_seconds, 1),
        "skipped_train_images": state.skipped,
        "skipped_val_images": metrics["skipped"],
        "labels": spec.labels,
        "confusion": metrics["confusion"],
    }
    atomic_write_text(out / "report.json", json.dumps(summary, indent=1) + "\n")
    pictures = _plots(out, state.history, metrics["confusion"], spec.labels)
    lines = [
        f"# {config.model} on {config.data}",
        "",
        f"- recipe `{recipe.name}`, {state.epoch} epochs, {state.step} steps, batch {recipe.batch_size}, "
        f"input {spec.preprocessing.input_size[0]}x{spec.preprocessing.input_size[1]}",
        f"- best epoch {state.best_epoch}: {spec.val.name} top-1 **{metrics['top1']:.2f}%**, top-5 "
        f"{metrics['top5']:.2f}%, loss {metrics['loss']:.4f}",
        f"- {prof.params:,} params, {prof.madds / 1e6:.2f}M MAdds",
        f"- training time {state.train_seconds / 60:.1f} min; skipped unreadable images: {state.skipped} train, "
        f"{metrics['skipped']} {spec.val.name}",
        "",
        "| epoch | train loss | train top-1 | val loss | val top-1 | val top-5 | s | img/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in state.history:
        lines.append(
            f"| {r['epoch']} | {r['train_loss']:.4f} | {r['train_top1']:.2f} | {r.get('val_loss', 0):.4f} | "
            f"{r.get('val_top1', 0):.2f} | {r.get('val_top5', 0):.2f} | {r['epoch_seconds']:.0f} | "
            f"{r['images_per_s']:.0f} |"
        )
    lines += ["", *(f"![{p.stem}]({p.name})" for p in pictures)]
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    log.info(
        "best model: %s (epoch %d); %s top-1 %.2f%%, top-5 %.2f%%; %.1f min training (every invocation), "
        "%.1f min wall time (this one); report: %s",
        out / BEST_DIR,
        state.best_epoch,
        spec.val.name,
        metrics["top1"],
        metrics["top5"],
        state.train_seconds / 60,
        wall_seconds / 60,
        out / "report.md",
    )
    return summary


def _plots(out: Path, history: list[dict], confusion: list[list[int]], labels: list[str]) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no PNG report (pip install 'mobilenets[train]')")
        return []
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], label="train")
    ax_loss.plot(epochs, [r.get("val_loss") for r in history], label="val")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.plot(epochs, [r["train_top1"] for r in history], label="train")
    ax_acc.plot(epochs, [r.get("val_top1") for r in history], label="val")
    ax_acc.set(xlabel="epoch", ylabel="top-1 (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    curves = out / "curves.png"
    atomic_write(curves, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)

    n = len(labels)
    size = max(5, 0.5 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(confusion, cmap="Blues")
    if n <= 30:
        ax.set_xticks(range(n), labels, rotation=60, ha="right")
        ax.set_yticks(range(n), labels)
        peak = max(max(row) for row in confusion) or 1
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    str(confusion[i][j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if confusion[i][j] > peak / 2 else "black",
                )
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix")
    fig.tight_layout()
    matrix = out / "confusion.png"
    atomic_write(matrix, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return [curves, matrix]
