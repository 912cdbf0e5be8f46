"""COCO mAP through pycocotools on in-memory boxes: cases whose answer is known by hand."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("pycocotools")

from mobilenets.tasks.coco_map import coco_map  # noqa: E402

LABELS = ["background", "shirt", "bag"]


def _target(boxes, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels)}


def _pred(boxes, labels, scores):
    return {**_target(boxes, labels), "scores": torch.tensor(scores)}


def test_perfect_predictions_score_one():
    targets = [_target([[10, 10, 50, 60], [60, 60, 100, 90]], [1, 2]), _target([[0, 0, 30, 30]], [1])]
    preds = [_pred([[10, 10, 50, 60], [60, 60, 100, 90]], [1, 2], [0.9, 0.8]), _pred([[0, 0, 30, 30]], [1], [0.7])]
    result = coco_map(preds, targets, LABELS)
    assert result["map"] == pytest.approx(1.0) and result["map50"] == pytest.approx(1.0)
    assert result["per_class"] == {"shirt": pytest.approx(1.0), "bag": pytest.approx(1.0)}


def test_iou_thresholds_count_as_coco_defines_them():
    # IoU of the prediction with the truth: 40x40 vs 40x30 inside it = 0.75 -> a hit at 0.5..0.75, a miss above.
    targets = [_target([[0, 0, 40, 40]], [1])]
    preds = [_pred([[0, 0, 40, 30]], [1], [0.9])]
    result = coco_map(preds, targets, LABELS)
    assert result["map50"] == pytest.approx(1.0) and result["map75"] == pytest.approx(1.0)
    assert result["map"] == pytest.approx(6 / 10, abs=0.01)  # thresholds 0.50, 0.55, ..., 0.75 of 10
    assert math.isnan(result["per_class"]["bag"])  # no bag anywhere: not scored


def test_wrong_class_and_no_predictions_score_zero():
    targets = [_target([[0, 0, 40, 40]], [1])]
    assert coco_map([_pred([[0, 0, 40, 40]], [2], [0.9])], targets, LABELS)["map"] == 0.0
    assert coco_map([_pred(torch.zeros(0, 4).tolist(), [], [])], targets, LABELS)["map"] == 0.0
    with pytest.raises(ValueError, match="predictions for"):
        coco_map([], targets, LABELS)
