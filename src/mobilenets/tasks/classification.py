"""Classification: cross-entropy, top-1/top-5 and the confusion matrix, on IDX or ImageFolder data."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..data.classification import BUILTIN, VAL_NAME, DataSpec, collate_skip, idx_batch, load_data
from ..data.loader import seeded_loader
from ..io import atomic_write, build_from_config, load_model, read_config, save_model
from ..models.factory import create_model
from ..models.spec import min_input_size
from ..progress import progress as with_bar
from ..registry import get_entry, list_models
from ..training.checkpoint import FINAL_DIR, RUN_CONFIG
from ..training.engine import run_config_of
from ..training.report import pyplot, write_curves, write_report
from ..training.task import Task
from . import register_task

log = logging.getLogger(__name__)


class ClassificationTask(Task):
    """Image classification: every registered backbone with its classifier."""

    name = "classification"
    best_metric = "top1"

    def setup(self, config, recipe, *, run_dir: Path, resume: bool) -> nn.Module:
        # A run started from --init builds the init model's architecture (its padding, BN eps...), not the
        # registry default; run.json keeps it so that a resume does not need the init directory.
        self.init_arch = _init_architecture(config, run_dir, resume) if config.init else None
        variant = {**config.model_options, **({"stem_stride": config.stem_stride} if config.stem_stride else {})}
        options = {**self.init_arch["options"], **variant} if self.init_arch else variant
        self.spec = load_data(
            config.data,
            resolution=config.resolution,
            in_chans=config.in_chans or (options["in_chans"] if self.init_arch else None),
            train_limit=config.train_limit,
            val_limit=config.val_limit,
            min_size=min_input_size(options.get("stem_stride", 2)),
            carve_val=True,  # choices are made on validation images; the test split is looked at once, at the end
        )
        self.spec.augment = dict(recipe.augment)
        self.smoothing = recipe.label_smoothing
        n_cls, in_chans = len(self.spec.labels), self.spec.preprocessing.in_chans
        if self.init_arch:
            options = {**options, "num_classes": n_cls, "drop_rate": recipe.drop_rate}
            if options["in_chans"] != in_chans:
                raise ValueError(
                    f"--init {config.init} takes {options['in_chans']}-channel input but the data is read with "
                    f"{in_chans}; pass --in-chans {options['in_chans']}"
                )
            self.init_arch = {**self.init_arch, "options": options}
            model = build_from_config(self.init_arch)
            if not resume:
                _load_init_weights(model, config.init)
        else:
            model = create_model(config.model, num_classes=n_cls, in_chans=in_chans, drop_rate=recipe.drop_rate,
                                 **variant)  # fmt: skip
        model.labels, model.preprocessing = list(self.spec.labels), self.spec.preprocessing
        if not config.teacher and (config.distill_weight is not None or config.distill_temperature is not None):
            raise ValueError(
                "--distill-weight and --distill-temperature go with --teacher MODEL_DIR; add it or drop them"
            )
        weight, temperature = config.distill_weight, config.distill_temperature
        self.distill = (0.5 if weight is None else weight, 1.0 if temperature is None else temperature)
        self.teacher = _load_teacher(config.teacher, self.spec, *self.distill) if config.teacher else None
        return model

    def describe(self) -> str:
        spec = self.spec
        h, w = spec.preprocessing.input_size
        test = f" / {len(spec.test)} {spec.test.name}" if spec.test is not None else ""
        line = (f"{spec.train.source}: {len(spec.train)} train / {len(spec.val)} {spec.val.name}{test} images, "
                f"{len(spec.labels)} classes, {h}x{w}")  # fmt: skip
        if self.teacher is not None:
            line += f", distilled from {self.teacher.name} (weight {self.distill[0]:g}, T {self.distill[1]:g})"
        return line

    def record(self) -> dict:
        record = {"labels": self.spec.labels, "preprocessing": self.spec.preprocessing.to_dict()}
        if self.init_arch:
            record["init_architecture"] = self.init_arch
        return record

    def train_size(self) -> int:
        return len(self.spec.train)

    def train_batches(self, order, batch_size, *, generator, workers, shard, start, loader_seed):
        return _batches(self.spec, self.spec.train, order, batch_size, generator, True, workers, shard, start,
                        loader_seed)  # fmt: skip

    @torch.no_grad()
    def batch_targets(self, inputs, targets):
        if self.teacher is None:
            return targets
        self.teacher.to(inputs.device)
        _, temperature = self.distill
        logits = self.teacher(inputs).float()
        probs = F.softmax(logits / temperature, dim=1)
        if self.spec.augment.get("hflip"):
            # the recipe trains on mirror images, so a mirror is the same label: the teacher sees both
            probs = (probs + F.softmax(self.teacher(inputs.flip(3)).float() / temperature, dim=1)) / 2
        return targets, probs

    def split_targets(self, targets, index, parts):
        if isinstance(targets, tuple):
            return tuple(t[index::parts] for t in targets)
        return targets[index::parts]

    def loss(self, outputs, targets, recipe):
        labels, teacher_probs = targets if isinstance(targets, tuple) else (targets, None)
        loss = F.cross_entropy(outputs.float(), labels, label_smoothing=self.smoothing)
        if teacher_probs is not None:
            # Hinton et al. 2015: KL to the teacher's softened distribution, times T^2 to keep its gradient scale
            weight, temperature = self.distill
            log_probs = F.log_softmax(outputs.float() / temperature, dim=1)
            matching = F.kl_div(log_probs, teacher_probs, reduction="batchmean") * temperature**2
            loss = (1 - weight) * loss + weight * matching
        return loss, {"top1": 100.0 * (outputs.argmax(1) == labels).sum().item()}

    def evaluate(self, model, *, device, channels_last, bf16, workers, batch_size):
        metrics = evaluate_split(model, self.spec, self.spec.val, batch_size=batch_size, device=device,
                                 channels_last=channels_last, bf16=bf16, workers=workers)  # fmt: skip
        warn_if_collapsed(metrics["confusion"], self.spec.labels, f"the epoch's model on {self.spec.val.name}")
        return metrics

    def save_model(self, model, directory, metadata):
        meta = {**metadata, "val_split": self.spec.val.name}
        for key in ("top1", "top5"):
            if key in meta:
                meta[key] = round(meta[key], 3)
        meta.pop("loss", None)
        save_model(model, directory, labels=list(self.spec.labels), preprocessing=self.spec.preprocessing,
                   metadata=meta, overwrite=True)  # fmt: skip

    def report(self, out, best_dir, *, config, recipe, state, wall_seconds):
        from ..complexity import profile

        spec = self.spec
        # The headline is the final epoch's model on the test split, looked at here once: no choice made on it.
        # best/ was chosen on the validation split, whose figure is the best epoch's row of metrics.csv.
        final_dir = out / FINAL_DIR
        held = spec.test if spec.test is not None else spec.val
        model = load_model(final_dir)
        metrics = evaluate_split(model, spec, held, batch_size=256, channels_last=config.channels_last,
                                 bf16=config.bf16, workers=config.workers)  # fmt: skip
        warn_if_collapsed(metrics["confusion"], spec.labels, f"the final model on {held.name}")
        prof = profile(model, "x".join(map(str, spec.preprocessing.input_size)))
        best_row = state.history[state.best_epoch - 1] if 0 < state.best_epoch <= len(state.history) else {}
        summary = {
            "model": config.model,
            "task": self.name,
            "data": config.data,
            "recipe": recipe.name,
            "epochs": state.epoch,
            "steps": state.step,
            "split": held.name,  # top1/top5/loss: the final model (final/) on this split
            "model_dir": FINAL_DIR,
            "top1": round(metrics["top1"], 3),
            "top5": round(metrics["top5"], 3),
            "loss": round(metrics["loss"], 5),
            "val_split": spec.val.name,  # what chose best/ (carved from the training images when the data has none)
            "val_images": len(spec.val),
            "best_epoch": state.best_epoch,
            "best_val_top1": round(best_row["val_top1"], 3) if "val_top1" in best_row else None,
            "params": prof.params,
            "madds": prof.madds,
            "resolution": list(spec.preprocessing.input_size),
            "train_seconds": round(state.train_seconds, 1),
            "wall_seconds_this_invocation": round(wall_seconds, 1),
            "skipped_train_images": state.skipped,
            f"skipped_{held.name}_images": metrics["skipped"],
            "labels": spec.labels,
            "confusion": metrics["confusion"],
        }
        pictures = [p for p in (write_curves(out, state.history, "top1", "top-1 (%)", spec.val.name),
                                _confusion_png(out, metrics["confusion"], spec.labels, held.name)) if p]  # fmt: skip
        best = (f"- best/: epoch {state.best_epoch}, chosen on {spec.val.name} ({len(spec.val):,} images"
                + (", carved from the training split" if spec.val.name == VAL_NAME and spec.test is not None else "")
                + (f"), {spec.val.name} top-1 {summary['best_val_top1']:.2f}%" if best_row else ")"))  # fmt: skip
        headline = [
            f"- recipe `{recipe.name}`, {state.epoch} epochs, {state.step} steps, batch {recipe.batch_size}, "
            f"input {spec.preprocessing.input_size[0]}x{spec.preprocessing.input_size[1]}",
            f"- final model (final/, epoch {state.epoch}): {held.name} top-1 **{metrics['top1']:.2f}%**, top-5 "
            f"{metrics['top5']:.2f}%, loss {metrics['loss']:.4f}",
            best,
            f"- {prof.params:,} params, {prof.madds / 1e6:.2f}M MAdds",
            f"- training time {state.train_seconds / 60:.1f} min; skipped unreadable images: {state.skipped} train, "
            f"{metrics['skipped']} {held.name}",
        ]
        write_report(out, summary, f"{config.model} on {config.data}", headline, state.history, pictures)
        log.info(
            "final model: %s (epoch %d); %s top-1 %.2f%%, top-5 %.2f%%; best/ is epoch %d (chosen on %s); "
            "%.1f min training (every invocation), %.1f min wall time (this one); report: %s",
            final_dir, state.epoch, held.name, metrics["top1"], metrics["top5"], state.best_epoch, spec.val.name,
            state.train_seconds / 60, wall_seconds / 60, out / "report.md",
        )  # fmt: skip
        return summary

    # --- what the commands ask of the task -----------------------------------------------------------

    @classmethod
    def evaluate_saved(cls, path, data, *, limit, batch_size, workers, device, tta):
        return evaluate(path, data, batch_size=batch_size, limit=limit, workers=workers, tta=tta, device=device)

    @classmethod
    def eval_lines(cls, metrics):
        return [
            f"{metrics['model']} on {metrics['data']}"
            + (" (the run's data)" if metrics["data_from"] == "run.json" else "")
            + f" ({metrics['split']}, {metrics['images']} images): "
            f"top-1 {metrics['top1']:.2f}%  top-5 {metrics['top5']:.2f}%  loss {metrics['loss']:.4f}"
            + ("  (flip TTA)" if metrics["tta"] else "")
            + (f"  ({metrics['skipped']} unreadable images skipped)" if metrics["skipped"] else "")
        ]

    @classmethod
    def headline(cls, summary):
        return (f"final epoch's {summary['split']} top-1 {summary['top1']:.2f}%  top-5 {summary['top5']:.2f}%  "
                f"(best/ is epoch {summary['best_epoch']}, chosen on {summary['val_split']})")  # fmt: skip

    @classmethod
    def predict(cls, model, paths, device, *, topk, min_score):
        from ..preprocessing import default_preprocessing, read_converted, read_user_image

        transform = (model.preprocessing or default_preprocessing(model.in_chans)).transform()
        batch = torch.stack([read_converted(path, transform) for path in paths])
        with torch.inference_mode():
            probs = model(batch.to(device)).softmax(-1).cpu()
        values, indices = probs.topk(min(topk, model.num_classes), dim=-1)
        labels = model.labels
        for path, vals, idxs in zip(paths, values.tolist(), indices.tolist(), strict=True):
            top = [{"index": i, "label": labels[i] if labels else f"class {i}", "probability": v}
                   for v, i in zip(vals, idxs, strict=True)]  # fmt: skip
            # the picture reads the file again: a batch keeps no pictures meanwhile
            yield {"image": str(path), "top": top}, (lambda path=path, top=top: draw_top(read_user_image(path), top))


def warn_if_collapsed(confusion: list[list[int]], labels: list[str], what: str) -> bool:
    """Warn when every prediction falls in one class (a model that learned nothing yet, or batch-norm statistics
    that lag a short run's weights); returns whether it did."""
    predicted = [sum(column) for column in zip(*confusion, strict=True)]
    total = sum(predicted)
    if len(labels) < 2 or total < 2 or max(predicted) < total:
        return False
    cls = predicted.index(total)
    log.warning("%s predicts %r for every one of its %d images: it has not learned to tell the classes apart "
                "yet (train longer; after very few steps the batch-norm statistics also lag the weights)",
                what, labels[cls], total)  # fmt: skip
    return True


TASK = register_task(ClassificationTask)


def _init_architecture(config, run_dir: Path, resume: bool) -> dict:
    """The architecture (name, family, options) of the model directory ``config.init``."""
    if resume:
        return json.loads((run_dir / RUN_CONFIG).read_text())["init_architecture"]
    arch = read_config(config.init)
    if config.model and config.model != arch.get("name"):
        raise ValueError(
            f"--init {config.init} holds {arch.get('name')!r} but --model is {config.model!r}; "
            "drop --model to train the init model's architecture"
        )
    return {"name": arch.get("name") or arch["family"], "family": arch["family"], "options": arch["options"]}


def _load_teacher(path: str, spec, weight: float, temperature: float) -> nn.Module:
    """The frozen classifier at ``path``, checked against the run's data and distillation options."""
    if not 0 < weight <= 1 or not temperature > 0:
        raise ValueError(
            f"--distill-weight must be in (0, 1] and --distill-temperature > 0, got {weight:g} and {temperature:g}"
        )
    teacher = load_model(path)
    name = getattr(teacher, "name", None)
    if name in list_models() and get_entry(name).task != "classification":
        raise ValueError(f"--teacher {path} is not a classifier; distil from a classification model directory")
    labels = list(teacher.labels or [])
    if labels != list(spec.labels):
        raise ValueError(
            f"--teacher {path} predicts {len(labels)} classes {labels[:3]}..., not the data's "
            f"{len(spec.labels)} {list(spec.labels)[:3]}...; distil from a model trained on these labels"
        )
    if teacher.preprocessing.to_dict() != spec.preprocessing.to_dict():
        raise ValueError(
            f"--teacher {path} reads {teacher.preprocessing.input_size} images normalised as "
            f"{teacher.preprocessing.mean}/{teacher.preprocessing.std}, the run {spec.preprocessing.input_size} "
            f"{spec.preprocessing.mean}/{spec.preprocessing.std}; give --resolution (and --in-chans) to match"
        )
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()


def _load_init_weights(model: nn.Module, init_dir: str) -> None:
    """Copy the weights of ``init_dir`` into ``model``; a classifier for another label count stays fresh."""
    source = load_model(init_dir).state_dict()
    target = model.state_dict()
    head = ("classifier.weight", "classifier.bias")
    if any(k not in source or k not in target or source[k].shape != target[k].shape for k in head):
        log.info("--init %s: a new classifier for %d classes", init_dir, model.num_classes)
        source = {k: v for k, v in source.items() if k not in head}
    missing, unexpected = model.load_state_dict(source, strict=False)
    if unexpected or set(missing) - set(head):
        raise ValueError(f"--init {init_dir} does not fit {model.name}: missing {missing}, unexpected {unexpected}")


@torch.no_grad()
def evaluate_split(
    model: nn.Module,
    spec: DataSpec,
    split,
    *,
    batch_size: int = 256,
    device=None,
    channels_last: bool = False,
    bf16: bool = False,
    workers: int = 2,
    progress: bool = False,
    tta: bool = False,
) -> dict:
    """Loss, top-1, top-5 (percent) and the confusion matrix of ``model`` on ``split``.

    ``tta``: horizontal-flip test-time augmentation, the logits of each image and of its mirror
    averaged (twice the compute; meant for models trained with random flips).
    """
    device = device or next(model.parameters()).device
    model.eval()
    n_cls = len(spec.labels)
    confusion = torch.zeros(n_cls, n_cls, dtype=torch.long)
    loss_sum, top1, top5, seen, skipped = 0.0, 0, 0, 0, 0
    batches = _batches(spec, split, torch.arange(len(split)), batch_size, None, False, workers, None)
    for x, y, bad in with_bar(batches, f"eval {split.name}", enabled=None if progress else False,
                              total=-(-len(split) // batch_size), unit="batch"):  # fmt: skip
        skipped += bad
        if len(y) == 0:
            continue
        x, y = x.to(device), y.to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x).float()
            if tta:
                logits = (logits + model(x.flip(-1)).float()) / 2
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        k = min(5, n_cls)
        topk = logits.topk(k, dim=1).indices
        top1 += (topk[:, 0] == y).sum().item()
        top5 += (topk == y[:, None]).any(dim=1).sum().item()
        confusion += torch.bincount(y.cpu() * n_cls + topk[:, 0].cpu(), minlength=n_cls * n_cls).view(n_cls, n_cls)
        seen += len(y)
    if seen == 0:
        raise ValueError(f"no readable images in the {split.name} split of {split.source}")
    return {
        "loss": loss_sum / seen,
        "top1": 100 * top1 / seen,
        "top5": 100 * top5 / seen,
        "images": seen,
        "skipped": skipped,
        "confusion": confusion.tolist(),
    }


def _batches(
    spec: DataSpec,
    split,
    order: torch.Tensor,
    batch_size: int,
    aug_gen,
    augment: bool,
    workers: int,
    shard: tuple[int, int] | None,
    start: int = 0,
    loader_seed: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
    """Yield (x, y, skipped) for consecutive batches of ``order`` from batch ``start``; ``shard`` = (rank, world)."""
    if spec.kind == "idx":
        chunks = [order[i : i + batch_size] for i in range(start * batch_size, len(order), batch_size)]
        if shard:
            chunks = [c[shard[0] :: shard[1]] for c in chunks]
        for idx in chunks:
            x = idx_batch(split.images[idx], spec.preprocessing, spec.augment if augment else None, aug_gen)
            yield x, split.targets[idx], 0
        return
    # Image folders augment in the workers: each sample seeded by its position (see data/loader.py).
    loader, _ = seeded_loader(split.dataset, order, batch_size, seed=loader_seed, start=start, shard=shard,
                              workers=workers, collate=collate_skip)  # fmt: skip
    yield from loader


def evaluate(
    path: str | Path,
    data: str | None = None,
    *,
    batch_size: int = 256,
    limit: int = 0,
    workers: int = 2,
    tta: bool = False,
    device: str = "cpu",
    progress: bool = True,
) -> dict:
    """Top-1/top-5 (percent), loss and confusion matrix of a trained model on ``data``'s val/test split.

    ``device``: "cpu", "cuda" or "cuda:N"; ``progress``: a bar over the batches when stderr is a terminal.
    ``data`` None: the data of the run (``RUN_DIR/run.json``, also for ``RUN_DIR/best``); a bare
    model directory knows no data, so it needs ``data``. Resolution and channels come from the
    model's preprocessing. ``tta``: average the logits of each image and its horizontal mirror.
    """
    from ..devices import resolve_device
    from ..io import resolve_model_dir

    target = resolve_device(device)  # before any loading: a wrong --device is the first error
    path = resolve_model_dir(path)  # a run's best/, a model directory, or NAME.TAG: weights shipped with the package
    data, data_from = (data, "--data") if data is not None else (run_data(path), "run.json")
    model = load_model(path)
    spec = load_data(data, preprocessing=model.preprocessing, in_chans=model.in_chans, val_limit=limit, train_limit=1)
    if len(spec.labels) != model.num_classes:
        raise ValueError(f"{data} has {len(spec.labels)} classes but the model at {path} predicts {model.num_classes}")
    if model.labels and list(model.labels) != list(spec.labels):
        raise ValueError(f"the class names of {data} differ from the model's {model.labels[:5]}...")
    with torch.inference_mode(False):
        metrics = evaluate_split(model.to(target), spec, spec.val, batch_size=batch_size, workers=workers, tta=tta,
                                 progress=progress)  # fmt: skip
    metrics.update(model=str(path), split=spec.val.name, data=str(data), data_from=data_from, tta=tta)
    return metrics


def run_data(model_dir: Path) -> str:
    """The data a run's model was trained on, from the run's run.json (``model_dir`` is the run's best/)."""
    # Evaluating on a default dataset would give a meaningless figure (an RGB ImageNet model on Fashion-MNIST).
    run_dir = model_dir.parent
    data = run_config_of(model_dir, "fashion-mnist, a directory of IDX files or an ImageFolder root").data
    if str(data).lower() not in BUILTIN and not Path(data).is_dir():
        raise FileNotFoundError(f"{run_dir / RUN_CONFIG} says the run trained on {data}, which is not a directory "
                                "from here; pass --data with where that data is now")  # fmt: skip
    return str(data)


def _confusion_png(out: Path, confusion: list[list[int]], labels: list[str], split: str) -> Path | None:
    plt = pyplot()
    if plt is None:
        return None
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
                color = "white" if confusion[i][j] > peak / 2 else "black"
                ax.text(j, i, str(confusion[i][j]), ha="center", va="center", fontsize=7, color=color)
    ax.set(xlabel="predicted", ylabel="true", title=f"confusion matrix on {split}")
    fig.tight_layout()
    matrix = out / "confusion.png"
    atomic_write(matrix, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return matrix


def draw_top(image, top: list[dict]):
    """``image`` (PIL) as a uint8 3 x H x W tensor under a header listing its top classes and probabilities."""
    import numpy as np
    import torch
    from PIL import Image, ImageDraw

    from ..data.show import font
    from ..preprocessing import to_model_mode

    picture = to_model_mode(image, "RGB")
    if picture.width < 256:  # a 28 x 28 picture would be narrower than its labels
        scale = math.ceil(256 / picture.width)
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    size = max(14, picture.width // 16)  # text that scales with the picture, as the boxes' labels do
    line, face = size + 4, font(size)
    header = Image.new("RGB", (picture.width, line * len(top) + 8), "white")
    draw = ImageDraw.Draw(header)
    for row, entry in enumerate(top):
        draw.text((6, 4 + row * line), f"{100 * entry['probability']:5.1f}%  {entry['label']}", fill="black", font=face)
    canvas = Image.new("RGB", (picture.width, header.height + picture.height), "white")
    canvas.paste(header, (0, 0))
    canvas.paste(picture, (0, header.height))
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1)
