"""A user's segmentation data: images and index-PNG masks in the VOC layout.

``ROOT/ImageSets/Segmentation/{train,val}.txt`` (one id a line) naming images in ``JPEGImages/`` (or
``images/``) and masks ``<id>.png`` in ``SegmentationClass/`` (or ``masks/``); or split folders
``images/{train,val}/`` + ``masks/{train,val}/`` (or ``{train,val}/images/`` + ``{train,val}/masks/``).
A mask pixel is its class index (0 = background), 255 = ignore (VOC's object borders). Class names
come from ``ROOT/labels.txt`` (one a line, background first), else VOC's 21 for the VOC folder names,
else the largest index seen. Skipped with one warning per kind and counted: missing or unreadable
images and masks, masks that are not index images (RGB colour masks, 16-bit masks), masks whose size differs from
their image, masks with values beyond the class count.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision import tv_tensors

from ..preprocessing import read_image
from .datasets import SegmentationDataset, Transform
from .transforms import IGNORE_INDEX

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VOC_LABELS = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip
SKIP_REASONS = {
    "missing_image": ("images that do not exist", "add them or remove their ids from the list"),
    "unreadable_image": ("images that cannot be read", "replace or remove the files"),
    "missing_mask": ("images without a mask <id>.png", "add the masks or remove the images"),
    "unreadable_mask": ("masks that cannot be read", "replace or remove the files"),
    "mask_not_indexed": ("masks that are not index images (mode L or P)",
                         "save each pixel's class index, not a colour"),
    "mask_16bit": ("masks saved as 16-bit images (index masks, but not 8-bit)",
                   "save them as 8-bit index PNGs (mode L or P; class indices 0-254, 255 = ignore), "
                   "e.g. Image.fromarray(mask.astype('uint8'))"),
    "size_mismatch": ("masks whose size differs from their image's", "resize the mask with nearest neighbour"),
    "bad_mask_value": ("masks with values beyond the class count (255 = ignore)",
                       "fix the masks or list every class in labels.txt"),
}  # fmt: skip


@dataclass
class VocRecord:
    image: Path
    mask: Path


@dataclass
class VocSplit:
    split: str
    source: Path
    records: list[VocRecord]
    skipped: Counter


def voc_palette() -> list[int]:
    """VOC's colour map (bit-interleaved class index), 256 RGB triples flattened, for viewable index PNGs."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette += [r, g, b]
    return palette


def _first_dir(*candidates: Path) -> Path | None:
    return next((d for d in candidates if d.is_dir()), None)


def _find_image(directory: Path, stem: str) -> Path:
    for suffix in IMAGE_SUFFIXES:
        if (directory / (stem + suffix)).is_file():
            return directory / (stem + suffix)
    return directory / (stem + ".jpg")


def voc_layout(root: str | Path) -> dict[str, tuple[Path, list[tuple[str, Path, Path]]]]:
    """{split: (list file or folder, [(id, image path, mask path)])}; FileNotFoundError says what is missing."""
    root = Path(root)
    lists = root / "ImageSets" / "Segmentation"
    layout = ("a segmentation dataset holds ImageSets/Segmentation/{train,val}.txt with JPEGImages/ (or images/) "
              "and SegmentationClass/ (or masks/), or images/{train,val}/ and masks/{train,val}/")  # fmt: skip
    found = {}
    if lists.is_dir():
        image_dir = _first_dir(root / "JPEGImages", root / "images")
        mask_dir = _first_dir(root / "SegmentationClass", root / "masks")
        if image_dir is None or mask_dir is None:
            missing = "JPEGImages/" if image_dir is None else "SegmentationClass/"
            raise FileNotFoundError(f"{root} has {lists} but no {missing} folder; {layout}")
        for split in SPLITS:
            list_file = lists / f"{split}.txt"
            if not list_file.is_file():
                raise FileNotFoundError(f"{lists} has no {split}.txt; {layout}")
            ids = _read_lines(list_file, "image ids")
            found[split] = (list_file, [(i, _find_image(image_dir, i), mask_dir / f"{i}.png") for i in ids])
        return found
    for split in SPLITS:
        image_dir = _first_dir(root / "images" / split, root / split / "images")
        mask_dir = _first_dir(root / "masks" / split, root / split / "masks")
        if image_dir is None or mask_dir is None:
            raise FileNotFoundError(f"{root} has no {'image' if image_dir is None else 'mask'} folder for {split}; "
                                    f"{layout}")  # fmt: skip
        images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        found[split] = (image_dir, [(p.stem, p, mask_dir / f"{p.stem}.png") for p in images])
    return found


def _read_lines(path: Path, what: str) -> list[str]:
    """The non-blank lines of a UTF-8 text file; one that is not UTF-8 is one line naming it."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text (byte {err.start}); save it as UTF-8, {what} one a line") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_labels(root: Path, is_voc: bool) -> list[str] | None:
    path = root / "labels.txt"
    if path.is_file():
        names = _read_lines(path, "class names")
        if len(names) < 2:
            raise ValueError(f"{path} lists {len(names)} names; give one class name a line, background first")
        return names
    return list(VOC_LABELS) if is_voc else None


def _read_mask(path: Path) -> np.ndarray | str:
    from PIL import Image

    if not path.is_file():
        return "missing_mask"
    try:
        with Image.open(path) as mask:
            if mask.mode.startswith("I"):  # I;16, I;16B, I: one channel of 16 or 32 bits, not a colour
                return "mask_16bit"
            if mask.mode not in ("L", "P"):
                return "mask_not_indexed"
            return np.asarray(mask)
    except (OSError, ValueError, Image.DecompressionBombError):
        return "unreadable_mask"


def _image_size(path: Path) -> tuple[int, int] | str:
    from PIL import Image

    if not path.is_file():
        return "missing_image"
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return "unreadable_image"


def read_split(split: str, source: Path, entries: list[tuple[str, Path, Path]], num_classes: int | None):
    """Check every image header and mask; returns the usable records, the skip counts and the largest index."""
    skipped: Counter = Counter()
    examples: dict[str, str] = {}
    records, pending, largest = [], [], 0
    for _, image_path, mask_path in entries:
        size = _image_size(image_path)
        if isinstance(size, str):
            skipped[size] += 1
            examples.setdefault(size, str(image_path))
            continue
        mask = _read_mask(mask_path)
        if isinstance(mask, str):
            skipped[mask] += 1
            examples.setdefault(mask, str(mask_path))
            continue
        if (mask.shape[1], mask.shape[0]) != size:
            skipped["size_mismatch"] += 1
            examples.setdefault("size_mismatch", f"{mask_path} is {mask.shape[1]}x{mask.shape[0]}, "
                                                 f"its image {size[0]}x{size[1]}")  # fmt: skip
            continue
        values = np.unique(mask)
        top = int(values[values != IGNORE_INDEX].max(initial=0))
        pending.append((VocRecord(image_path, mask_path), top))
        largest = max(largest, top)
    limit = num_classes if num_classes is not None else largest + 1
    for record, top in pending:
        if top >= limit:
            skipped["bad_mask_value"] += 1
            examples.setdefault("bad_mask_value", f"{record.mask} has value {top} for {limit} classes")
            continue
        records.append(record)
    for reason, count in sorted(skipped.items()):
        what, fix = SKIP_REASONS[reason]
        log.warning("%s: skipped %d %s (first: %s); %s", source, count, what, examples[reason], fix)
    return VocSplit(split, source, records, skipped), largest


class VocSegmentation(SegmentationDataset):
    """One split of a VOC-layout directory; an image that fails to decode is warned about and dropped."""

    def __init__(self, split: VocSplit, labels: list[str], transform: Transform = None, in_chans: int = 3):
        super().__init__(labels, transform, in_chans)
        self.split, self.records = split, split.records
        self.skipped = split.skipped

    def __len__(self) -> int:
        return len(self.records)

    def sample(self, index: int):
        from PIL import Image

        record = self.records[index]
        try:  # predict's reader: 16-bit scaled, transparency over white (PIL's convert clips and drops alpha)
            image = read_image(record.image, "L" if self.in_chans == 1 else "RGB")
            with Image.open(record.mask) as mask:
                mask = np.array(mask)
        except (OSError, ValueError) as err:  # e.g. truncated: the header read at load time was fine
            # warned here; counted by whoever reads the batch (see CocoDetection.sample)
            log.warning("skipping unreadable sample %s (%s: %s)", record.image, err.__class__.__name__, err)
            return None
        return tv_tensors.Image(image), tv_tensors.Mask(torch.from_numpy(mask))


def load_voc(root: str | Path) -> tuple[dict[str, VocSplit], list[str]]:
    """Both splits of a VOC-layout directory and the class names (index 0 = background)."""
    root = Path(root)
    layout = voc_layout(root)
    is_voc = (root / "JPEGImages").is_dir() and (root / "SegmentationClass").is_dir()
    labels = read_labels(root, is_voc)
    num_classes = len(labels) if labels is not None else None
    splits, largest = {}, 0
    for split, (source, entries) in layout.items():
        splits[split], top = read_split(split, source, entries, num_classes)
        largest = max(largest, top)
    if labels is None:
        labels = ["background", *(str(k) for k in range(1, max(largest, 1) + 1))]
    for split, data in splits.items():
        if not data.records:
            raise ValueError(f"{data.source}: the {split} split has no usable image and mask pairs "
                             f"({', '.join(f'{n} {r}' for r, n in sorted(data.skipped.items())) or 'it lists none'}); "
                             "add pairs or fix the files named in the warnings above")  # fmt: skip
    return splits, labels
