"""What detection and segmentation share as tasks: TaskData splits batched by index, normalized, backbone init."""

from __future__ import annotations

import abc
import logging
from pathlib import Path

import torch
from torch import nn

from ..data.loader import seeded_loader
from ..io import load_model, read_config, resolve_model_dir
from ..preprocessing import Preprocessing
from ..training.task import Task

log = logging.getLogger(__name__)

# Detection and segmentation heads normalize as torchvision's references do for these models.
DEFAULT_MEAN, DEFAULT_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


class DenseTask(Task):
    """A task over ``mobilenets.data.TaskData`` (images in [0, 1], a target per image)."""

    @abc.abstractmethod
    def load(self, config, in_chans: int):
        """The task's TaskData for ``config`` (data, resolution, limits, augmentation), read with ``in_chans``."""

    @abc.abstractmethod
    def build(self, config, data) -> nn.Module:
        """The task's model for ``data`` (its class count) and ``config`` (the registered name)."""

    def setup(self, config, recipe, *, run_dir: Path, resume: bool) -> nn.Module:
        if config.init:
            raise ValueError(f"--init is for classification runs; a {self.name} model starts from a classifier's "
                             "weights with --init-backbone RUN_OR_MODEL_DIR")  # fmt: skip
        if config.teacher:
            raise ValueError(f"--teacher distils a classifier; a {self.name} run trains on its labels alone")
        self.data = self.load(config, backbone_chans(config.init_backbone))
        model = self.build(config, self.data)
        self.after_load(model)
        if config.init_backbone and not resume:
            self.mean, self.std = init_backbone(model, config.init_backbone)
        elif config.init_backbone:
            pre = read_config(resolve_model_dir(config.init_backbone)).get("preprocessing") or {}
            self.mean, self.std = tuple(pre.get("mean", DEFAULT_MEAN)), tuple(pre.get("std", DEFAULT_STD))
        else:
            self.mean, self.std = DEFAULT_MEAN, DEFAULT_STD
        size = self.data.resolution
        model.labels = list(self.data.labels)
        chans = model.in_chans
        # The whole image is resized to the input (no crop: boxes and masks cover all of it).
        order = "L" if chans == 1 else "RGB"
        model.preprocessing = Preprocessing(input_size=(size, size), resize=0, channel_order=order,
                                            mean=self.mean[:chans], std=self.std[:chans],
                                            extra={"resize_whole_image": True})  # fmt: skip
        return model

    def after_load(self, model: nn.Module) -> None:
        """Anything the task reads off its model once it is built (e.g. the ignore index)."""

    def describe(self) -> str:
        d = self.data
        return (f"{d.name} ({d.source}): {len(d.train)} train / {len(d.val)} val images, {d.num_classes} classes "
                f"with background, {d.resolution}x{d.resolution}, augment {d.augment}")  # fmt: skip

    def record(self) -> dict:
        return {"data": self.data.to_dict(), "labels": list(self.data.labels)}

    def train_size(self) -> int:
        return len(self.data.train)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=images.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=images.dtype).view(1, -1, 1, 1)
        return (images - mean[:, : images.shape[1]]) / std[:, : images.shape[1]]

    def batches(self, dataset, order, batch_size, *, workers, shard, start, loader_seed):
        loader, sizes = seeded_loader(dataset, order, batch_size, seed=loader_seed, start=start, shard=shard,
                                      workers=workers, collate=self.data.collate)  # fmt: skip
        for (images, targets), size in zip(loader, sizes, strict=True):
            yield self.normalize(images), targets, size - len(images)

    def train_batches(self, order, batch_size, *, generator, workers, shard, start, loader_seed):
        return self.batches(self.data.train, order, batch_size, workers=workers, shard=shard, start=start,
                            loader_seed=loader_seed)  # fmt: skip

    def skipped_in_report(self) -> dict[str, dict[str, int]]:
        """What loading skipped per split, plus the validation images that failed to decode in the report's own
        pass (``unreadable`` of the last pass over val): each image counted once, whatever the worker count."""
        skipped = {split: dict(counts) for split, counts in self.data.skipped.items()}
        if getattr(self, "unreadable", 0):
            val = skipped.setdefault("val", {})
            val["unreadable_image"] = val.get("unreadable_image", 0) + self.unreadable
        return skipped

    def val_batches(self, batch_size: int, workers: int):
        order = torch.arange(len(self.data.val))
        return self.batches(self.data.val, order, batch_size, workers=workers, shard=None, start=0, loader_seed=0)

    def prediction_grid(self, out: Path, samples: list[tuple]) -> Path | None:
        """predictions.png: each normalized image twice, under "prediction" and "truth" headers."""
        from ..data.show import draw_sample, grid, legend_entries, save_png

        pictures = []
        for image, predicted, truth in samples:
            chans = image.shape[0]
            shown = (
                image * torch.tensor(self.std).view(-1, 1, 1)[:chans] + torch.tensor(self.mean).view(-1, 1, 1)[:chans]
            )
            pictures += [draw_sample(shown, t, self.data.labels, with_legend=False) for t in (predicted, truth)]
        if not pictures:
            return None
        masks = [m for _, predicted, truth in samples for m in (predicted, truth)]
        entries = legend_entries(masks, self.data.labels) if self.name == "segmentation" else ()
        path = out / "predictions.png"
        save_png(grid(pictures, nrow=4, headers=("prediction", "truth"), entries=entries), path)
        return path

    def save_model(self, model, directory, metadata):
        from ..io import save_model

        meta = {**metadata, "data": self.data.name}
        save_model(model, directory, labels=list(self.data.labels), preprocessing=model.preprocessing,
                   metadata=meta, overwrite=True)  # fmt: skip

    def report(self, out, best_dir, *, config, recipe, state, wall_seconds):
        from ..complexity import profile
        from ..training.report import write_report

        model = load_model(best_dir)
        figures, lines, pictures = self.final_figures(model, out, config=config, state=state)
        size = self.data.resolution
        prof = profile(model, size)
        summary = {
            "model": config.model, "task": self.name, "data": self.data.to_dict(), "recipe": recipe.name,
            "epochs": state.epoch, "steps": state.step, "best_epoch": state.best_epoch, **figures,
            "params": prof.params, "madds": prof.madds, "resolution": [size, size],
            "train_seconds": round(state.train_seconds, 1), "wall_seconds_this_invocation": round(wall_seconds, 1),
            "skipped": self.skipped_in_report(),  # after final_figures: its pass over val counts what it cannot read
        }  # fmt: skip
        headline = [
            f"- data `{self.data.name}` ({len(self.data.train)} train / {len(self.data.val)} val), {size}x{size}",
            *lines,
            f"- {prof.params:,} params, {prof.madds / 1e9:.3f}B MAdds; training {state.train_seconds / 60:.1f} min",
        ]
        write_report(out, summary, f"{config.model} on {self.data.name}", headline, state.history, pictures)
        log.info("best model: %s (epoch %d); %s; report: %s", best_dir, state.best_epoch, self.headline(summary),
                 out / "report.md")  # fmt: skip
        return summary

    @abc.abstractmethod
    def final_figures(self, model: nn.Module, out: Path, *, config, state) -> tuple[dict, list[str], list[Path]]:
        """The best model's figures on val for ``report.json``, its headline lines and the report's pictures."""

    # --- what the commands ask of the task -----------------------------------------------------------

    @classmethod
    def evaluate_saved(cls, path, data, *, limit, batch_size, workers, device, tta):
        if tta:
            raise ValueError(f"--tta is for classifiers; a {cls.name} model is evaluated without it")
        return evaluate_saved(cls(), path, data, limit=limit, batch_size=min(batch_size, 64), workers=workers,
                              device=device)  # fmt: skip

    per_class_key = "per_class"  # the key of evaluate_saved's per-class figures

    @classmethod
    @abc.abstractmethod
    def figures(cls, metrics: dict) -> str:
        """The task's headline figures of its metrics (or of its report's summary, which has the same keys)."""

    @classmethod
    def eval_lines(cls, metrics):
        return [f"{metrics['model']} on {metrics['data']} ({metrics['images']} val images): {cls.figures(metrics)}",
                "  " + ", ".join(f"{k} {v:.3f}" for k, v in metrics[cls.per_class_key].items())]  # fmt: skip

    @classmethod
    def headline(cls, summary):
        return "val " + cls.figures(summary)

    @classmethod
    def whole_images(cls, model: nn.Module, paths: list[Path], device) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """A batch of the images at ``paths``, each resized whole to the model's input and normalized, and the
        images themselves (uint8, their own size): boxes and masks cover all of an image, so nothing is cropped."""
        import torch.nn.functional as F
        from torchvision.transforms.functional import pil_to_tensor

        from ..preprocessing import default_preprocessing, read_converted, to_model_mode

        pre = model.preprocessing or default_preprocessing(model.in_chans)
        mean, std = torch.tensor(pre.mean).view(-1, 1, 1), torch.tensor(pre.std).view(-1, 1, 1)
        mode = "L" if model.in_chans == 1 else "RGB"
        images = [pil_to_tensor(read_converted(path, lambda image: to_model_mode(image, mode))) for path in paths]
        inputs = []
        for image in images:
            x = F.interpolate(image[None].float() / 255, size=pre.input_size, mode="bilinear", antialias=True)[0]
            if pre.channel_order == "BGR":
                x = x.flip(0)
            inputs.append((x * pre.value_range - mean) / std)
        return torch.stack(inputs).to(device), images


def backbone_chans(source: str | None) -> int:
    """The input channels of an ``--init-backbone`` source (3 without one): the head's model takes the same."""
    if not source:
        return 3
    return int(read_config(resolve_model_dir(source))["options"].get("in_chans", 3))


def init_backbone(model: nn.Module, source: str) -> tuple[tuple, tuple]:
    """Copy a classification run's (or model directory's) backbone weights into ``model``; returns its mean/std.

    The source must be the same backbone family and width: its stem and blocks must fit. Where the
    head's backbone is narrower by design (a reduced tail), the source's largest-L2 filters fill it;
    what still differs (a removed classifier, another block layout) is left as initialised and named
    in the log; a mismatch in the first stages is an error naming it.
    """
    donor = load_model(resolve_model_dir(source))
    target = model.backbone_network  # the classification network inside the head's model
    ours, theirs = target.state_dict(), donor.state_dict()
    fits = {k: theirs[k] for k, v in ours.items() if k in theirs and theirs[k].shape == v.shape}
    narrowed = _narrowed_to(donor, target) if len(fits) < len(ours) else None
    if narrowed is not None:
        slim = narrowed.state_dict()
        refits = {k: slim[k] for k, v in ours.items() if k in slim and slim[k].shape == v.shape}
        if len(refits) > len(fits):
            log.info("--init-backbone: %d tensors where %s is wider than %s's backbone take its largest-L2 "
                     "filters (NetAdapt's rule)", len(refits) - len(fits), donor.name, model.name)  # fmt: skip
            fits = refits
    misfits = [k for k in ours if k not in fits]
    first_stage = [k for k in ours if k.startswith(("stem.", "stages.0.", "stages.1."))]
    if any(k in misfits for k in first_stage) or len(fits) < len(ours) / 2:
        bad = next(k for k in misfits)
        there = tuple(theirs[bad].shape) if bad in theirs else "missing"
        raise ValueError(f"--init-backbone {source} ({donor.name}) does not fit the backbone of {model.name}: "
                         f"{bad!r} is {there} there but {tuple(ours[bad].shape)} here; give a classification run "
                         "or model directory of the same backbone and width")  # fmt: skip
    target.load_state_dict({**ours, **fits})
    if misfits:
        log.info("--init-backbone: %d tensors left as initialised (they differ by design: %s ...)", len(misfits),
                 ", ".join(misfits[:3]))  # fmt: skip
    log.info("--init-backbone %s: %d of %d backbone tensors from %s", source, len(fits), len(ours), donor.name)
    pre = donor.preprocessing
    return tuple(pre.mean), tuple(pre.std)


def _narrowed_to(donor: nn.Module, target: nn.Module) -> nn.Module | None:
    """``donor`` cut to ``target``'s channel widths wherever it is wider, keeping the largest-L2 filters.

    A reduced tail (RF2) halves the last stage; DeepLab's also halves the expansion of its first block,
    which torchvision's reduced tail keeps: those layers then start from the strongest half of the
    classifier's filters instead of at random. None when the two are not the same network but for widths.
    """
    from ..models.width import WidthPlan, narrow

    try:
        have, want = WidthPlan.of(donor), WidthPlan.of(target)
    except (ValueError, AttributeError):
        return None
    if len(have.groups) != len(want.groups) or len(have.exp) != len(want.exp):
        return None
    plan = WidthPlan(
        groups=tuple(map(min, have.groups, want.groups)),
        exp=tuple(min(h, w) if h and w else h for h, w in zip(have.exp, want.exp, strict=True)),
        final=min(have.final, want.final) if want.final else have.final,
        features=have.features,
    )
    if plan == have:
        return None
    try:
        return narrow(donor, plan)
    except ValueError:  # a plan the family cannot take (e.g. a width that breaks a shortcut)
        return None


def evaluate_saved(task: DenseTask, path: str | Path, data: str | None, *, limit: int = 0, batch_size: int = 32,
                   workers: int = 2, device: str = "cpu") -> dict:  # fmt: skip
    """``task``'s validation metrics of a run's best model (or a model directory) on ``data``'s val split.

    ``data`` None: the run's own (its run.json); a bare model directory needs ``data``.
    """
    from ..devices import resolve_device
    from ..training.engine import TrainConfig, run_config_of

    target = resolve_device(device)
    model_dir = resolve_model_dir(path)
    if data is None:
        saved = run_config_of(model_dir, "fmnist-det, fmnist-seg, a COCO or VOC directory")
        # The run's data as the run saw it: the same canvases or split cut, unless --limit says otherwise.
        data, limit = saved.data, limit or saved.val_limit
    model = load_model(model_dir).to(target)
    pre = model.preprocessing
    config = TrainConfig(model=model.name, output="", data=str(data), resolution=pre.input_size[0], val_limit=limit,
                         train_limit=1, augment=False)  # fmt: skip
    task.data = task.load(config, model.in_chans)
    if task.data.num_classes != model.num_classes:
        raise ValueError(f"{data} has {task.data.num_classes} classes (with background) but the model at "
                         f"{model_dir} predicts {model.num_classes}")  # fmt: skip
    task.mean, task.std = tuple(pre.mean), tuple(pre.std)
    task.model = model
    task.after_load(model)
    metrics = task.evaluate(model, device=target, channels_last=False, bf16=False, workers=workers,
                            batch_size=batch_size)  # fmt: skip
    return {**metrics, "model": str(model_dir), "data": str(data), "images": len(task.data.val)}
