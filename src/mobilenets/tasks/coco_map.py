"""COCO box mAP (mAP@[.5:.95], mAP50, mAP75, per-class AP) through pycocotools, on in-memory predictions.

pycocotools is the reference every detection paper reports with; it is the ``detection`` extra.
"""

from __future__ import annotations

import contextlib
import io

import torch


def _xywh(boxes: torch.Tensor) -> list[list[float]]:
    boxes = boxes.detach().float().cpu().reshape(-1, 4)
    return torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).tolist()


def coco_map(predictions: list[dict], targets: list[dict], labels: list[str]) -> dict:
    """mAP of ``predictions`` against ``targets`` (one dict per image: ``boxes`` xyxy pixels, ``labels``;
    predictions also ``scores``). ``labels[0]`` is the background; classes 1..K-1 are scored.

    Returns floats in [0, 1]: ``map`` (@[.5:.95]), ``map50``, ``map75``, and ``per_class`` AP (a dict by
    class name; NaN for a class absent from both).
    """
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise ImportError("COCO mAP needs pycocotools: pip install 'mobilenets[detection]'") from None
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} images")
    images, annotations, detections = [], [], []
    for image_id, (pred, target) in enumerate(zip(predictions, targets, strict=True)):
        images.append({"id": image_id})
        for box, label in zip(_xywh(target["boxes"]), target["labels"].tolist(), strict=True):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(label),
                                "bbox": box, "area": box[2] * box[3], "iscrowd": 0})  # fmt: skip
        for box, label, score in zip(_xywh(pred["boxes"]), pred["labels"].tolist(), pred["scores"].tolist(),
                                     strict=True):  # fmt: skip
            detections.append({"image_id": image_id, "category_id": int(label), "bbox": box, "score": float(score)})
    categories = [{"id": k, "name": labels[k]} for k in range(1, len(labels))]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and table
        truth = COCO()
        truth.dataset = {"images": images, "annotations": annotations, "categories": categories}
        truth.createIndex()
        if not detections:
            return {
                "map": 0.0,
                "map50": 0.0,
                "map75": 0.0,
                "per_class": {labels[k]: 0.0 for k in range(1, len(labels))},
            }
        found = truth.loadRes(detections)
        evaluation = COCOeval(truth, found, "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = evaluation.stats
    # precision: [IoU thresholds, recall points, classes, area ranges, max detections]; area "all", 100 dets.
    precision = evaluation.eval["precision"][:, :, :, 0, -1]
    per_class = {}
    for i, cat in enumerate(evaluation.params.catIds):
        values = precision[:, :, i]
        values = values[values > -1]
        per_class[labels[cat]] = float(values.mean()) if values.size else float("nan")
    return {"map": max(0.0, float(stats[0])), "map50": max(0.0, float(stats[1])), "map75": max(0.0, float(stats[2])),
            "per_class": per_class}  # fmt: skip
