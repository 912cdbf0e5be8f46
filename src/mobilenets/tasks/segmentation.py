"""Semantic segmentation: mIoU, per-class IoU and pixel accuracy from one confusion matrix over a whole split.

As the torchvision reference (``utils.ConfusionMatrix``) and DeepLab evaluate: every labelled pixel of
the split is counted into one C x C matrix (rows: label, columns: prediction), pixels labelled
``ignore_index`` (255, Cityscapes' and VOC's) are left out, and IoU_c = TP / (TP + FP + FN) is
computed once at the end. Averaging per-image IoUs gives other (wrong) numbers. Predictions are
upsampled bilinearly (``align_corners=False``) to the label size before the argmax.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from . import register_task
from .dense import DenseTask, backbone_chans

log = logging.getLogger(__name__)

IGNORE_INDEX = 255


def predict_labels(logits: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """(N, C, h, w) logits -> (N, H, W) class indices, the logits upsampled bilinearly to ``size`` first."""
    if logits.dim() != 4:
        raise ValueError(f"logits must be (N, classes, H, W), got shape {tuple(logits.shape)}")
    if size is not None and tuple(logits.shape[-2:]) != tuple(size):
        logits = F.interpolate(logits.float(), size=tuple(size), mode="bilinear", align_corners=False)
    # max().indices: the same first maximum as argmax(1), which on CPU reduces across channels ~10x slower
    # (0.1 s for a batch of 32 at 11 x 128 x 128: a fifth of an LR-ASPP training step).
    return logits.max(1).indices


def confusion_matrix(
    predictions: torch.Tensor, labels: torch.Tensor, num_classes: int, ignore_index: int | None = IGNORE_INDEX
) -> torch.Tensor:
    """C x C int64 counts, ``[label, prediction]``, over the pixels whose label is not ``ignore_index``.

    ``predictions`` are class indices (N, H, W) or logits (N, C, h, w), which are upsampled to the
    labels' size and arg-maxed. Labels outside [0, num_classes) other than ``ignore_index`` are an error.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    if labels.dim() == 4 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.dim() != 3:
        raise ValueError(f"labels must be (N, H, W) class indices, got shape {tuple(labels.shape)}")
    if labels.is_floating_point():
        raise ValueError(f"labels must be integer class indices, got {labels.dtype}")
    if predictions.dim() == 4:
        if predictions.shape[1] != num_classes:
            raise ValueError(f"logits have {predictions.shape[1]} classes but the metric counts {num_classes}; "
                             "give the model's num_classes")  # fmt: skip
        predictions = predict_labels(predictions, tuple(labels.shape[-2:]))
    if predictions.shape != labels.shape:
        raise ValueError(f"predictions {tuple(predictions.shape)} and labels {tuple(labels.shape)} differ in shape")
    labels, predictions = labels.reshape(-1).long(), predictions.reshape(-1).long()
    keep = labels != ignore_index if ignore_index is not None else torch.ones_like(labels, dtype=torch.bool)
    labels, predictions = labels[keep], predictions[keep]
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        bad = int(labels.max()) if int(labels.max()) >= num_classes else int(labels.min())
        raise ValueError(f"label {bad} is outside [0, {num_classes}) and is not the ignore index {ignore_index}; "
                         "map unlabelled pixels to the ignore index")  # fmt: skip
    if predictions.numel() and (int(predictions.min()) < 0 or int(predictions.max()) >= num_classes):
        raise ValueError(f"predicted class {int(predictions.max())} is outside [0, {num_classes})")
    counts = torch.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


@dataclass(frozen=True)
class SegmentationScores:
    miou: float  # mean over the classes that occur (as label or prediction); NaN if none
    iou: list[float]  # per class; NaN for a class neither labelled nor predicted anywhere in the split
    pixel_accuracy: float  # correct / labelled pixels
    pixels: int  # labelled (not ignored) pixels counted

    def as_dict(self, labels: list[str] | None = None) -> dict:
        names = labels or [str(i) for i in range(len(self.iou))]
        return {"miou": self.miou, "pixel_accuracy": self.pixel_accuracy, "pixels": self.pixels,
                "iou": dict(zip(names, self.iou, strict=True))}  # fmt: skip


def scores_from_confusion(matrix: torch.Tensor) -> SegmentationScores:
    """mIoU, per-class IoU and pixel accuracy of a ``[label, prediction]`` confusion matrix."""
    matrix = matrix.double()
    tp = matrix.diag()
    union = matrix.sum(0) + matrix.sum(1) - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, math.nan))
    present = union > 0
    miou = float(iou[present].mean()) if present.any() else math.nan
    total = float(matrix.sum())
    return SegmentationScores(miou, iou.tolist(), float(tp.sum()) / total if total else math.nan, int(total))


class SegmentationMetric:
    """Accumulates one confusion matrix over batches; ``compute()`` gives the split's scores.

    >>> metric = SegmentationMetric(num_classes=19)
    >>> for images, labels in loader:
    ...     metric.update(model(images), labels)
    >>> metric.compute().miou
    """

    def __init__(self, num_classes: int, ignore_index: int | None = IGNORE_INDEX):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        self.matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    @torch.no_grad()
    def update(self, predictions: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch: logits (N, C, h, w) or class indices (N, H, W), and labels (N, H, W)."""
        cm = confusion_matrix(predictions.detach(), labels.to(predictions.device), self.num_classes, self.ignore_index)
        self.matrix += cm.cpu()

    def compute(self) -> SegmentationScores:
        return scores_from_confusion(self.matrix)


def check_segmentation_model(model: nn.Module | str) -> None:
    """A ValueError naming the segmentation models when ``model`` (a model or a registered name) predicts classes."""
    from ..registry import get_entry, list_models

    task = get_entry(model).task if isinstance(model, str) else getattr(model, "task", "classification")
    if task != "segmentation":
        name = model if isinstance(model, str) else getattr(model, "name", type(model).__name__)
        choices = ", ".join(list_models(task="segmentation"))
        raise ValueError(f"{name} is a {task} model; segmentation needs one of {choices} "
                         "(or a model directory saved from one)")  # fmt: skip


def create_segmentation_model(name: str, *, num_classes: int | None = None, in_chans: int = 3, **options) -> nn.Module:
    """``create_model`` for segmentation names only: a classifier's name is a ValueError listing the valid ones."""
    from ..models.factory import create_model

    check_segmentation_model(name)
    return create_model(name, num_classes=num_classes, in_chans=in_chans, **options)


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Pixel-wise cross-entropy at the labels' size, ignored pixels left out (torchvision's and DeepLab's loss)."""
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits, labels.long(), ignore_index=ignore_index)


# --- the training task ----------------------------------------------------------------------------------------


class SegmentationTask(DenseTask):
    """LR-ASPP / R-ASPP on ``fmnist-seg`` canvases or a VOC-layout directory; the best epoch has the highest mIoU."""

    name = "segmentation"
    best_metric = "miou"
    default_recipe = "segmentation"

    ignore_index = IGNORE_INDEX

    def load(self, config, in_chans):
        from ..data.load import load_segmentation_data

        return load_segmentation_data(config.data, resolution=config.resolution, train_limit=config.train_limit,
                                      val_limit=config.val_limit, in_chans=in_chans,
                                      augment=None if config.augment else "none")  # fmt: skip

    def build(self, config, data):
        chans = backbone_chans(config.init_backbone)
        return create_segmentation_model(config.model, num_classes=data.num_classes, in_chans=chans,
                                         **config.model_options)  # fmt: skip

    def after_load(self, model):
        self.ignore_index = self.data.details.get("ignore_index", IGNORE_INDEX)

    def loss(self, outputs, targets, recipe):
        loss = F.cross_entropy(outputs.float(), targets, ignore_index=self.ignore_index)
        labelled = targets != self.ignore_index
        correct = ((predict_labels(outputs) == targets) & labelled).sum().item()
        # pixel accuracy of the batch, weighted per image as the engine averages per sample
        return loss, {"pixel_acc": 100.0 * correct / max(1, int(labelled.sum())) * len(targets)}

    @torch.no_grad()
    def _scores(self, model, *, device, batch_size, workers):
        model.eval()
        metric = SegmentationMetric(self.data.num_classes, self.ignore_index)
        shown, self.unreadable = [], 0
        for x, masks, bad in self.val_batches(batch_size, workers):
            self.unreadable += bad
            logits = model(x.to(device))
            metric.update(logits, masks.to(device))
            if len(shown) < 8:
                shown += list(zip(x, predict_labels(logits).cpu(), masks, strict=True))
        return metric.compute(), shown[:8]

    def evaluate(self, model, *, device, channels_last, bf16, workers, batch_size):
        scores, _ = self._scores(model, device=device, batch_size=min(batch_size, 32), workers=workers)
        return {"miou": scores.miou, "pixel_accuracy": scores.pixel_accuracy,
                "iou": dict(zip(self.data.labels, scores.iou, strict=True))}  # fmt: skip

    def final_figures(self, model, out, *, config, state):
        from ..training.report import write_curves

        scores, shown = self._scores(model, device=torch.device("cpu"), batch_size=16, workers=config.workers)
        per_class = dict(zip(self.data.labels, scores.iou, strict=True))
        figures = {"miou": round(scores.miou, 4), "pixel_accuracy": round(scores.pixel_accuracy, 4), "iou": per_class}
        lines = [
            f"- best epoch {state.best_epoch}: mIoU ({self.data.num_classes} classes, background included) "
            f"**{scores.miou:.3f}**, pixel accuracy {scores.pixel_accuracy:.3f}",
            "- per-class IoU: " + ", ".join(f"{k} {v:.3f}" for k, v in per_class.items()),
        ]
        pictures = [p for p in (write_curves(out, state.history, "miou", "mIoU"), self.grid(out, shown)) if p]
        return figures, lines, pictures

    def grid(self, out, shown):
        """predictions.png: validation images with the predicted mask left and the true mask right."""
        return self.prediction_grid(out, shown)

    per_class_key = "iou"

    @classmethod
    def figures(cls, metrics):
        return f"mIoU {metrics['miou']:.3f}  pixel accuracy {metrics['pixel_accuracy']:.3f}"

    @classmethod
    def predict(cls, model, paths, device, *, topk, min_score):
        import numpy as np

        from ..data.show import draw_sample

        batch, images = cls.whole_images(model, paths, device)
        with torch.inference_mode():
            outputs = model(batch)
        labels = model.labels or [f"class {i}" for i in range(model.num_classes)]
        for k, (path, image) in enumerate(zip(paths, images, strict=True)):
            with torch.inference_mode():
                mask = predict_labels(outputs[k : k + 1].float(), tuple(image.shape[-2:]))[0].cpu()
            counts = torch.bincount(mask.flatten(), minlength=len(labels)).tolist()
            dtype = np.uint8 if len(labels) <= 256 else np.int32
            result = {"image": str(path), "mask": mask.numpy().astype(dtype),
                      "pixels": {labels[c]: n for c, n in enumerate(counts) if n}}  # fmt: skip
            yield result, (lambda image=image, mask=mask: draw_sample(image, mask, labels))


TASK = register_task(SegmentationTask)
