"""A user's detection data in the COCO layout, the one every detection tool reads and writes.

``ROOT/annotations/instances_{train,val}.json`` (``instances_train2017.json`` too) beside the images
in ``ROOT/{train,val}/`` (or ``train2017/``, ``images/{train,val}/``, ``images/``). COCO's sparse
category ids become contiguous labels 1..K in id order (0 = background), names kept. What cannot be
used is skipped with one warning per kind and counted in ``skipped``: missing or unreadable images,
images whose size is not the JSON's, boxes of zero area or wholly outside their image, unknown
category or image ids, crowd regions (ignored for training as torchvision's references do) and
malformed annotations. Boxes partly outside their image are clipped to it (counted in ``clipped``).
A file of the wrong structure (not UTF-8, an entry that is not an object, an id that is not a whole
number) is refused in one line naming the file and the entry.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision import tv_tensors

from ..preprocessing import read_image
from .datasets import DetectionDataset, Transform

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
SKIP_REASONS = {
    "missing_image": ("images whose file does not exist", "check file_name against the image folder"),
    "unreadable_image": ("images that cannot be read as images", "replace or remove the files"),
    "size_mismatch": ("images whose size differs from the JSON's width/height", "fix width/height in the JSON"),
    "duplicate_image": ("images listed twice with the same id", "give every image its own id"),
    "zero_area": ("boxes of zero width or height", "remove them or give them a size"),
    "outside_image": ("boxes wholly outside their image", "fix their bbox ([x, y, width, height] in pixels)"),
    "unknown_category": ("boxes whose category_id is not in categories", "add the category or fix the id"),
    "unknown_image": ("annotations whose image_id is not in images", "add the image or fix the id"),
    "crowd": ("crowd annotations (iscrowd=1)", "they are ignored for training, as in torchvision's references"),
    "malformed": ("annotations without a bbox of 4 numbers", "fix their bbox ([x, y, width, height])"),
}


@dataclass
class CocoRecord:
    path: Path
    width: int
    height: int
    boxes: np.ndarray  # (n, 4) float32 xyxy pixels
    labels: np.ndarray  # (n,) int64 in 1..K
    image_id: int


@dataclass
class CocoSplit:
    split: str
    json_path: Path
    image_dir: Path
    records: list[CocoRecord]
    skipped: Counter
    clipped: int


def coco_layout(root: str | Path) -> dict[str, tuple[Path, Path]]:
    """{split: (instances json, image folder)} of a COCO directory, or FileNotFoundError saying what is missing."""
    root = Path(root)
    ann_dir = root / "annotations"
    layout = "a COCO dataset holds annotations/instances_train.json and instances_val.json beside images/ "
    layout += "(or train/ and val/ image folders)"
    if not ann_dir.is_dir():
        raise FileNotFoundError(f"{root} has no annotations/ folder; {layout}")
    found = {}
    for split in SPLITS:
        files = [ann_dir / f"instances_{split}.json", *sorted(ann_dir.glob(f"instances_{split}*.json"))]
        json_path = next((f for f in files if f.is_file()), None)
        if json_path is None:
            raise FileNotFoundError(f"{ann_dir} has no instances_{split}.json; {layout}")
        tag = json_path.stem.removeprefix("instances_")
        folders = [root / tag, root / split, root / "images" / tag, root / "images" / split, root / "images"]
        image_dir = next((d for d in folders if d.is_dir()), None)
        if image_dir is None:
            raise FileNotFoundError(f"{root} has no image folder for {split}; put the images in {root / 'images'} "
                                    f"or {root / split}")  # fmt: skip
        found[split] = (json_path, image_dir)
    return found


def read_instances(path: Path) -> dict:
    """A COCO instances file, its structure checked: a wrong JSON type is one line naming the file and entry.

    Entries of the right shape but unusable (a missing image, a bad bbox, an unknown id) are left to
    ``read_split``, which skips and counts them.
    """
    try:
        doc = json.loads(Path(path).read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 JSON (byte {err.start} is not UTF-8); save the COCO instances "
                         "file as UTF-8") from None  # fmt: skip
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); a COCO instances file is one JSON object") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path} holds a {type(doc).__name__}, not a COCO object with images, annotations, categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise ValueError(f"{path} has no {key!r} list; a COCO instances file holds images, annotations "
                             "and categories")  # fmt: skip
    _check_entries(path, doc["images"], "images", "an object with id, file_name (width, height)",
                   {"id": _is_int, "file_name": _is_str}, {"width": _is_size, "height": _is_size})  # fmt: skip
    _check_entries(path, doc["annotations"], "annotations", "an object with image_id, category_id, bbox",
                   {"image_id": _is_int, "category_id": _is_int}, {"iscrowd": _is_int_or_bool})  # fmt: skip
    _check_entries(path, doc["categories"], "categories", "an object with id, name",
                   {"id": _is_int}, {"name": _is_str})  # fmt: skip
    return doc


_KINDS = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
_WANTS = {"_is_int": "a whole number", "_is_str": "a string", "_is_size": "a whole number >= 1",
          "_is_int_or_bool": "0 or 1"}  # fmt: skip


def _kind(value) -> str:
    return "null" if value is None else _KINDS.get(type(value), type(value).__name__)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_str(value) -> bool:
    return isinstance(value, str)


def _is_size(value) -> bool:
    return _is_int(value) and value >= 1


def _is_int_or_bool(value) -> bool:
    return isinstance(value, int)


def _check_entries(path: Path, entries: list, key: str, shape: str, required: dict, optional: dict) -> None:
    """Every entry an object whose ``required`` fields exist and ``optional`` ones (when present) pass their check."""
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: {key}[{i}] is {_kind(entry)}, expected {shape}")
        for field, fits in (*required.items(), *optional.items()):
            if field not in entry:
                if field in required:
                    raise ValueError(f"{path}: {key}[{i}] has no {field!r}; expected {shape}")
                continue
            if not fits(entry[field]):
                raise ValueError(f"{path}: {key}[{i}].{field} is {_kind(entry[field])} ({entry[field]!r:.40}), "
                                 f"expected {_WANTS[fits.__name__]}")  # fmt: skip


def categories(doc: dict, path: Path) -> list[tuple[int, str]]:
    """(COCO id, name) in id order; label k (1..K) is the k-th of them."""
    try:
        cats = sorted((int(c["id"]), str(c.get("name", c["id"]))) for c in doc["categories"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path}: every category needs an integer 'id' and a 'name'") from None
    if not cats:
        raise ValueError(f"{path} lists no categories; add {{'id': 1, 'name': ...}} entries")
    ids = [i for i, _ in cats]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path} lists category ids more than once: {sorted(i for i in set(ids) if ids.count(i) > 1)}")
    return cats


def _probe(path: Path) -> tuple[int, int] | str:
    from PIL import Image

    if not path.is_file():
        return "missing_image"
    try:
        with Image.open(path) as image:  # reads the header only
            return image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return "unreadable_image"


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)


def read_split(split: str, json_path: Path, image_dir: Path, label_of: dict[int, int]) -> CocoSplit:
    """One split's usable images and boxes; what is skipped is counted and warned about once per kind."""
    doc = read_instances(json_path)
    skipped: Counter = Counter()
    examples: dict[str, str] = {}

    def skip(reason: str, example: str) -> None:
        skipped[reason] += 1
        examples.setdefault(reason, example)

    images: dict[int, dict] = {}
    for entry in doc["images"]:
        image_id, name = entry["id"], entry["file_name"]  # their types checked by read_instances
        if image_id in images:
            skip("duplicate_image", f"id {image_id}")
            continue
        path = image_dir / name
        size = _probe(path)
        if isinstance(size, str):
            skip(size, str(path))
            images[image_id] = None  # known id, unusable image: its boxes go with it, uncounted
            continue
        width, height = size
        if (entry.get("width"), entry.get("height")) not in ((None, None), (width, height)):
            skip(
                "size_mismatch", f"{path} is {width}x{height}, the JSON says {entry.get('width')}x{entry.get('height')}"
            )
            images[image_id] = None
            continue
        images[image_id] = {"path": path, "width": width, "height": height, "boxes": [], "labels": []}
    clipped = 0
    for ann in doc["annotations"]:
        ann_id = ann.get("id", "?")
        if ann.get("image_id") not in images:
            skip("unknown_image", f"annotation {ann_id} (image_id {ann.get('image_id')!r})")
            continue
        image = images[ann["image_id"]]
        if image is None:
            continue
        if ann.get("iscrowd", 0):
            skip("crowd", f"annotation {ann_id}")
            continue
        bbox = ann.get("bbox")
        if not isinstance(bbox, list | tuple) or len(bbox) != 4 or not all(map(_number, bbox)):
            skip("malformed", f"annotation {ann_id} (bbox {bbox!r})")
            continue
        if ann.get("category_id") not in label_of:
            skip("unknown_category", f"annotation {ann_id} (category_id {ann.get('category_id')!r})")
            continue
        x, y, w, h = (float(v) for v in bbox)
        if w <= 0 or h <= 0:
            skip("zero_area", f"annotation {ann_id} in {image['path'].name} (bbox {bbox})")
            continue
        x1, y1, x2, y2 = max(x, 0.0), max(y, 0.0), min(x + w, image["width"]), min(y + h, image["height"])
        if x1 >= x2 or y1 >= y2:
            skip("outside_image", f"annotation {ann_id} in {image['path'].name} (bbox {bbox})")
            continue
        clipped += (x1, y1, x2, y2) != (x, y, x + w, y + h)
        image["boxes"].append((x1, y1, x2, y2))
        image["labels"].append(label_of[ann["category_id"]])
    for reason, count in sorted(skipped.items()):
        what, fix = SKIP_REASONS[reason]
        log.warning("%s: skipped %d %s (first: %s); %s", json_path, count, what, examples[reason], fix)
    if clipped:
        log.warning("%s: clipped %d boxes partly outside their image to its edges", json_path, clipped)
    records = [
        CocoRecord(
            path=im["path"],
            width=im["width"],
            height=im["height"],
            boxes=np.array(im["boxes"], np.float32).reshape(-1, 4),
            labels=np.array(im["labels"], np.int64),
            image_id=image_id,
        )  # fmt: skip
        for image_id, im in images.items()
        if im is not None
    ]
    return CocoSplit(split, json_path, image_dir, records, skipped, clipped)


class CocoDetection(DetectionDataset):
    """One split of a COCO directory; an image that fails to decode is warned about and dropped by collate."""

    def __init__(self, split: CocoSplit, labels: list[str], transform: Transform = None, in_chans: int = 3):
        super().__init__(labels, transform, in_chans)
        self.split, self.records = split, split.records
        self.skipped = split.skipped

    def __len__(self) -> int:
        return len(self.records)

    def sample(self, index: int):
        record = self.records[index]
        try:  # predict's reader: 16-bit scaled, transparency over white (PIL's convert clips and drops alpha)
            image = read_image(record.path, "L" if self.in_chans == 1 else "RGB")
        except (OSError, ValueError) as err:  # e.g. truncated: the header read at load time was fine
            # Warned here; counted by whoever reads the batch (collate drops it), once per pass, in any process.
            log.warning("skipping unreadable image %s (%s: %s)", record.path, err.__class__.__name__, err)
            return None
        size = (record.height, record.width)
        boxes = tv_tensors.BoundingBoxes(torch.from_numpy(record.boxes), format="XYXY", canvas_size=size)
        return tv_tensors.Image(image), {"boxes": boxes, "labels": torch.from_numpy(record.labels)}


def load_coco(root: str | Path) -> tuple[dict[str, CocoSplit], list[str]]:
    """Both splits of a COCO directory and the class names (index 0 = "background")."""
    layout = coco_layout(root)
    json_path = layout["train"][0]
    cats = categories(read_instances(json_path), json_path)
    label_of = {coco_id: k + 1 for k, (coco_id, _) in enumerate(cats)}
    splits = {split: read_split(split, *layout[split], label_of) for split in SPLITS}
    for split, data in splits.items():
        if not data.records:
            raise ValueError(f"{data.json_path}: the {split} split has no usable images "
                             f"({_summary(data.skipped) or 'it lists none'}); add images to it or fix the files "
                             "named in the warnings above")  # fmt: skip
    if not any(len(r.labels) for r in splits["train"].records):
        raise ValueError(f"{splits['train'].json_path}: the train split has no usable boxes "
                         f"({_summary(splits['train'].skipped) or 'it lists none'}); a detector needs boxes "
                         "to learn from: add annotations")  # fmt: skip
    return splits, ["background", *(name for _, name in cats)]


def _summary(skipped: Counter) -> str:
    return ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in sorted(skipped.items()))
