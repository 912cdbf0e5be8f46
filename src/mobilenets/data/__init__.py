"""The data layer: IDX files, image folders, Fashion-MNIST canvases, COCO boxes and VOC masks.

Names are imported on first use (``from mobilenets.data import load_detection_data``), so importing
the package costs nothing until a dataset is needed.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "CanvasSpec": "canvas", "CanvasGenerator": "canvas", "Canvas": "canvas",
    "TaskData": "load", "load_detection_data": "load", "load_segmentation_data": "load",
    "collate_detection": "datasets", "collate_segmentation": "datasets",
    "detection_transforms": "transforms", "segmentation_transforms": "transforms",
    "export_canvases": "export",
}  # fmt: skip
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
