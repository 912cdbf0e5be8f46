"""Detection as a training task: SSDLite losses, COCO mAP on the validation split, pictures of the boxes."""

from __future__ import annotations

import logging

import torch

from ...data.load import load_detection_data
from ...models.factory import create_model
from ...training.report import write_curves
from .. import register_task
from ..coco_map import coco_map
from ..dense import DenseTask, backbone_chans
from .loss import loss_from_outputs

log = logging.getLogger(__name__)


class DetectionTask(DenseTask):
    """SSDLite on ``fmnist-det`` canvases or a COCO directory; the best epoch has the highest mAP@[.5:.95]."""

    name = "detection"
    best_metric = "map"
    default_recipe = "detection"

    def load(self, config, in_chans):
        return load_detection_data(config.data, resolution=config.resolution, train_limit=config.train_limit,
                                   val_limit=config.val_limit, in_chans=in_chans,
                                   augment=None if config.augment else "none")  # fmt: skip

    def build(self, config, data):
        in_chans = backbone_chans(config.init_backbone)
        self.model = create_model(config.model, num_classes=data.num_classes, in_chans=in_chans, **config.model_options)
        return self.model

    def targets_to(self, targets, device):
        return [{k: v.to(device) for k, v in t.items()} for t in targets]

    def loss(self, outputs, targets, recipe):
        size = (self.data.resolution, self.data.resolution)
        losses = loss_from_outputs(self.model, outputs, targets, size)
        n = len(targets)
        stats = {name: value.item() * n for name, value in losses.items()}
        return sum(losses.values()), stats

    @torch.no_grad()
    def predictions(self, model, *, device, batch_size: int, workers: int):
        model.eval()
        preds, truth, images, self.unreadable = [], [], [], 0
        for x, targets, bad in self.val_batches(batch_size, workers):
            self.unreadable += bad
            boxes, scores = model(x.to(device))
            preds += [{k: v.cpu() for k, v in p.items()} for p in model.postprocess(boxes, scores)]
            truth += targets
            if len(images) < 16:
                images += list(x[: 16 - len(images)])
        return preds, truth, images

    def evaluate(self, model, *, device, channels_last, bf16, workers, batch_size):
        preds, truth, _ = self.predictions(model, device=device, batch_size=min(batch_size, 64), workers=workers)
        result = coco_map(preds, truth, self.data.labels)
        return {"map": result["map"], "map50": result["map50"], "map75": result["map75"],
                "per_class": result["per_class"]}  # fmt: skip

    def final_figures(self, model, out, *, config, state):
        preds, truth, images = self.predictions(model, device=torch.device("cpu"), batch_size=32,
                                                workers=config.workers)  # fmt: skip
        result = coco_map(preds, truth, self.data.labels)
        figures = {"map": round(result["map"], 4), "map50": round(result["map50"], 4),
                   "map75": round(result["map75"], 4), "per_class_ap": result["per_class"]}  # fmt: skip
        lines = [
            f"- best epoch {state.best_epoch}: mAP@[.5:.95] **{result['map']:.3f}**, mAP50 {result['map50']:.3f}, "
            f"mAP75 {result['map75']:.3f}",
            "- per-class AP: " + ", ".join(f"{k} {v:.3f}" for k, v in result["per_class"].items()),
        ]
        pictures = [p for p in (write_curves(out, state.history, "map", "mAP@[.5:.95]"),
                                self.grid(out, images, preds, truth)) if p]  # fmt: skip
        return figures, lines, pictures

    def grid(self, out, images, preds, truth):
        """predictions.png: validation images, predicted boxes (score >= 0.3, with it) left, the truth right."""
        import warnings

        warnings.filterwarnings("ignore", message="boxes doesn't contain any box")  # an image with none to draw
        shown = [{k: p[k][p["scores"] >= 0.3] for k in ("boxes", "labels", "scores")} for p in preds]
        return self.prediction_grid(out, list(zip(images, shown, truth, strict=False)))

    per_class_key = "per_class"

    @classmethod
    def figures(cls, metrics):
        return f"mAP@[.5:.95] {metrics['map']:.3f}  mAP50 {metrics['map50']:.3f}  mAP75 {metrics['map75']:.3f}"

    @classmethod
    def predict(cls, model, paths, device, *, topk, min_score):
        from ...data.show import draw_sample

        batch, images = cls.whole_images(model, paths, device)
        with torch.inference_mode():
            found = model.detect(batch)
        labels = model.labels or [f"class {i}" for i in range(model.num_classes)]
        size = model.preprocessing.input_size if model.preprocessing else batch.shape[-2:]
        for path, image, one in zip(paths, images, found, strict=True):
            height, width = image.shape[-2:]
            keep = one["scores"] >= min_score
            scale = torch.tensor([width / size[1], height / size[0]] * 2)  # boxes in the image's own pixels
            boxes, ids, scores = one["boxes"][keep].cpu() * scale, one["labels"][keep].cpu(), one["scores"][keep].cpu()
            result = {"image": str(path), "detections": [
                {"box": [round(v, 1) for v in box], "label": labels[i], "index": i, "score": round(s, 4)}
                for box, i, s in zip(boxes.tolist(), ids.tolist(), scores.tolist(), strict=True)
            ]}  # fmt: skip
            drawn = {"boxes": boxes, "labels": ids, "scores": scores}  # the picture shows each box's score
            yield result, (lambda image=image, drawn=drawn: draw_sample(image, drawn, labels))


TASK = register_task(DetectionTask)
