"""Write the canvases as files other tools read: FMNIST-Det as COCO, FMNIST-Seg in the VOC layout.

COCO: ``{train,val}/NNNNNN.png`` + ``annotations/instances_{train,val}.json`` (category ids 1..10 =
Fashion-MNIST class + 1, bbox [x, y, w, h] in pixels, area = the item's pixels above the threshold).
VOC: ``images/<split>_NNNNNN.png``, ``SegmentationClass/<split>_NNNNNN.png`` (palette index PNGs,
0 = background), ``ImageSets/Segmentation/{train,val}.txt`` and ``labels.txt``. Both read back with
``load_detection_data`` / ``load_segmentation_data``. The output must be new or empty; the files are
written into a temporary sibling that is renamed into place when complete.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from .. import io
from .canvas import DEFAULT_COUNTS, CanvasGenerator, CanvasSpec
from .voc import voc_palette

log = logging.getLogger(__name__)
INFO_FILE = "mobilenets-data.json"


def _check_empty(output: Path) -> None:
    if os.path.lexists(output) and (not output.is_dir() or any(output.iterdir())):
        raise io.OutputExistsError(f"{output} exists and is not an empty directory; nothing was written: "
                                   "choose a new or empty directory for the export")  # fmt: skip


def export_canvases(
    spec: CanvasSpec | str,
    output: str | os.PathLike,
    *,
    train: int = DEFAULT_COUNTS["train"],
    val: int = DEFAULT_COUNTS["val"],
    directory: str | Path | None = None,
) -> dict:
    """Write ``train`` + ``val`` canvases of ``spec`` to ``output`` (COCO for det, VOC for seg); returns a summary."""
    from PIL import Image

    from .load import _fmnist_labels

    spec = CanvasSpec.parse(spec) if isinstance(spec, str) else spec
    if train < 1 or val < 1:
        raise ValueError(f"export needs at least one canvas per split, got --train {train} --val {val}")
    output = Path(output)
    _check_empty(output)
    labels = _fmnist_labels()
    counts = {"train": train, "val": val}
    summary = {"name": spec.name, "format": "coco" if spec.task == "det" else "voc", "output": str(output),
               "counts": counts, "canvas": spec.to_dict(), "items": {}}  # fmt: skip
    generators = {split: CanvasGenerator(spec, split, directory) for split in counts}
    for g in generators.values():
        _ = g.pool  # a missing Fashion-MNIST fails here, before any file is made
    last = "annotations" if spec.task == "det" else "ImageSets"
    with io.atomic_directory(output, ours=None, what="an empty directory", last=last) as tmp:
        if spec.task == "det":
            (tmp / "annotations").mkdir()
            for split, n in counts.items():
                (tmp / split).mkdir()
                images, annotations = [], []
                for i in range(n):
                    c = generators[split](i)
                    name = f"{i:06d}.png"
                    Image.fromarray(c.image).save(tmp / split / name)
                    images.append({"id": i + 1, "file_name": name, "width": spec.size, "height": spec.size})
                    for box, label, (_, _, fg) in zip(c.boxes.tolist(), c.labels.tolist(), c.footprints, strict=True):
                        x1, y1, x2, y2 = box
                        annotations.append({
                            "id": len(annotations) + 1, "image_id": i + 1, "category_id": label,
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "area": int(fg.sum()), "iscrowd": 0,
                        })  # fmt: skip
                document = {
                    "info": {
                        "description": f"{spec.name} {split}",
                        "version": spec.version,
                        "mobilenets": spec.to_dict(),
                    },
                    "images": images,
                    "annotations": annotations,
                    "categories": [{"id": k, "name": labels[k], "supercategory": "fashion"} for k in range(1, 11)],
                }
                (tmp / "annotations" / f"instances_{split}.json").write_text(json.dumps(document) + "\n")
                summary["items"][split] = len(annotations)
        else:
            for folder in ("images", "SegmentationClass", "ImageSets/Segmentation"):
                (tmp / folder).mkdir(parents=True)
            palette = voc_palette()
            for split, n in counts.items():
                ids = []
                for i in range(n):
                    c = generators[split](i)
                    stem = f"{split}_{i:06d}"
                    Image.fromarray(c.image).save(tmp / "images" / f"{stem}.png")
                    mask = Image.frombytes("P", (spec.size, spec.size), c.mask.tobytes())
                    mask.putpalette(palette)
                    mask.save(tmp / "SegmentationClass" / f"{stem}.png")
                    ids.append(stem)
                    summary["items"][split] = summary["items"].get(split, 0) + len(c.labels)
                (tmp / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
            (tmp / "labels.txt").write_text("\n".join(labels) + "\n")
        (tmp / INFO_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary
