"""Predict with a model directory: classes, boxes or masks per image, in batches, streamed as they come.

Images are files, folders (the images inside, by extension, sorted) or glob patterns; they are read
``batch_size`` at a time, so memory stays bounded however many there are. ``save`` writes each image
with its prediction drawn (top classes as a header, boxes, or the mask as a colour overlay) into a
predictions directory that lists what it holds in ``MANIFEST``: ``overwrite`` replaces those files
and no others.
"""

from __future__ import annotations

import glob
import json
import math
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
BATCH_SIZE = 32
MANIFEST = ".mobilenets-predictions.json"


def check_min_score(min_score: float) -> float:
    """A detection score threshold: a finite number from 0 to 1 (nan or 2 would hide every box, silently)."""
    try:
        value = float(min_score)
    except (TypeError, ValueError):
        raise ValueError(f"--min-score takes a number from 0 to 1, got {min_score!r}") from None
    if not (math.isfinite(value) and 0 <= value <= 1):
        raise ValueError(f"--min-score takes a number from 0 to 1 (a detection score), got {min_score!r}")
    return value


def _check_count(value, flag: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{flag} takes a whole number >= 1, got {value!r}")
    return value


def expand_images(images: Iterable[str | os.PathLike], exclude: str | os.PathLike | None = None) -> list[Path]:
    """Image files as given; a folder -> the images under it (by extension, sorted); a glob pattern -> its matches.

    ``exclude``: a folder whose images are left out of folders and patterns (a --save directory
    inside an input folder). A missing file, an empty folder or a pattern with no match is an error.
    """
    skip = Path(exclude).absolute() if exclude is not None else None

    def kept(path: Path) -> bool:
        return skip is None or not path.absolute().is_relative_to(skip)

    found: list[Path] = []
    for item in images:
        path = Path(item)
        if path.is_dir():
            inside = sorted(
                p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and kept(p)
            )
            if not inside:
                raise ValueError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)}); give image files")
            found += inside
        elif path.exists() or not glob.has_magic(str(item)):
            if not path.exists():
                raise FileNotFoundError(f"image {path} does not exist")
            found.append(path)
        else:
            matches = sorted(Path(p) for p in glob.glob(str(item), recursive=True))
            matches = [p for p in matches if p.is_file() and kept(p)]
            if not matches:
                raise FileNotFoundError(f"no image matches {item}")
            found += matches
    return found


# --- the predictions directory ----------------------------------------------------------------


def is_predictions_dir(path: str | os.PathLike) -> bool:
    """``path`` holds the manifest of a ``predict --save`` run."""
    try:
        files = json.loads((Path(path) / MANIFEST).read_text()).get("files")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(files, list)


class _Pictures:
    """Pictures written into a predictions directory, each listed in its manifest before it is written."""

    def __init__(self, directory: str | os.PathLike, overwrite: bool, model: str):
        from .io import check_output

        self.directory = Path(directory)
        state = check_output(self.directory, overwrite=overwrite, ours=is_predictions_dir,
                             what="a predictions directory (from predict --save)",
                             hint="pass --overwrite to replace the pictures it lists; other files stay")  # fmt: skip
        if state == "ours":  # delete what we wrote last time, and nothing else
            for name in json.loads((self.directory / MANIFEST).read_text())["files"]:
                if isinstance(name, str) and name == Path(name).name and name not in ("", ".", "..", MANIFEST):
                    (self.directory / name).unlink(missing_ok=True)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.model = model
        self.files: list[str] = []
        # Names in use (a user's own files included) are never written over: a picture takes the next free name.
        self.taken = {p.name.lower() for p in self.directory.iterdir()} | {MANIFEST.lower()}
        self._write_manifest()

    def names(self, images: list[Path]) -> list[Path]:
        """A free name per image: ``<stem>.png``, ``<stem>-2.png``... for the same stem twice; listed at once."""
        out = []
        for image in images:
            stem, k = image.stem, 1
            name = f"{stem}.png"
            while name.lower() in self.taken:
                k += 1
                name = f"{stem}-{k}.png"
            self.taken.add(name.lower())
            self.files.append(name)
            out.append(self.directory / name)
        self._write_manifest()
        return out

    def _write_manifest(self) -> None:
        from .io import atomic_write_text

        document = {"written_by": "mobilenets predict --save", "model": self.model, "files": self.files}
        atomic_write_text(self.directory / MANIFEST, json.dumps(document, indent=1) + "\n")


# --- predictions ------------------------------------------------------------------------------


def iter_predictions(
    directory: str | os.PathLike,
    images: Iterable[str | os.PathLike],
    *,
    topk: int = 5,
    min_score: float = 0.3,
    save: str | os.PathLike | None = None,
    overwrite: bool = False,
    device: str = "cpu",
    batch_size: int = BATCH_SIZE,
) -> Iterator[dict]:
    """One result per image, in order, ``batch_size`` images at a time, for any model directory.

    Classifier: ``{"image", "top": [{"index", "label", "probability"}]}`` (``topk`` classes).
    Detector: ``{"image", "detections": [{"box", "label", "index", "score"}]}``, boxes (x1, y1, x2, y2)
    in the image's own pixels, scores >= ``min_score``. Segmenter: ``{"image", "mask", "pixels"}``, the
    mask an (H, W) numpy array of class indices at the image's own size, ``pixels`` its count per label.
    ``save``: a new or empty directory (or, with ``overwrite``, one this function wrote) that gets each
    image with its prediction drawn, as ``<stem>.png`` (``<stem>-2.png`` for a stem met again); the
    result then names it as ``"picture"``.
    """
    from .devices import resolve_device
    from .io import load_model
    from .tasks import get_task, task_of

    _check_count(topk, "--topk")
    _check_count(batch_size, "--batch-size")
    min_score = check_min_score(min_score)
    target = resolve_device(device)
    model = load_model(directory).to(target).eval()
    if not model.num_classes:
        raise ValueError(f"{directory} holds a model without a classifier (num_classes 0); nothing to predict")
    task = get_task(task_of(model))
    paths = expand_images(images, exclude=save)
    pictures = _Pictures(save, overwrite, str(directory)) if save is not None else None
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        names = pictures.names(chunk) if pictures is not None else [None] * len(chunk)
        results = task.predict(model, chunk, target, topk=topk, min_score=min_score)
        for name, (result, draw) in zip(names, results, strict=True):
            if name is not None:
                with warnings.catch_warnings():  # torchvision warns about an image without boxes
                    warnings.simplefilter("ignore", UserWarning)
                    _save(draw(), name)
                result["picture"] = str(name)
            yield result


def _save(picture, name) -> None:
    from .data.show import save_png

    save_png(picture, name)


def predict(
    directory: str | os.PathLike,
    images: Iterable[str | os.PathLike],
    topk: int = 5,
    device: str = "cpu",
    *,
    save: str | os.PathLike | None = None,
    overwrite: bool = False,
    batch_size: int = BATCH_SIZE,
) -> list[dict]:
    """Top-``topk`` classes per image: ``[{"image", "top": [{"index", "label", "probability"}]}]``.

    ``images``: files, folders or glob patterns (``expand_images``); ``device``: "cpu", "cuda" or
    "cuda:N"; ``save``: a directory for the images with their top classes drawn (see
    ``iter_predictions``, which streams the same results one by one).
    """
    return list(iter_predictions(directory, images, topk=topk, save=save, overwrite=overwrite, device=device,
                                 batch_size=batch_size))  # fmt: skip


def predict_dense(
    directory: str | os.PathLike, images: Iterable[str | os.PathLike], *, save: str | os.PathLike | None = None,
    device: str = "cpu", min_score: float = 0.3, overwrite: bool = False, batch_size: int = BATCH_SIZE,
) -> list[dict]:  # fmt: skip
    """Detections or masks per image from a detection or segmentation model directory.

    Each image is resized whole to the model's input; boxes come back in the image's own pixels
    (``[{"image", "detections": [{"box", "label", "index", "score"}]}]``, scores >= ``min_score``), a
    mask as an (H, W) array of class indices at the image's own size (``[{"image", "mask", "pixels"}]``,
    ``pixels``: its count per label). ``save``: a predictions directory that gets each image with its
    boxes drawn, or its mask as a colour overlay. ``iter_predictions`` streams the same results.
    """
    return list(iter_predictions(directory, images, save=save, device=device, min_score=min_score,
                                 overwrite=overwrite, batch_size=batch_size))  # fmt: skip
