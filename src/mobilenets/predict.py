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


def _read(path: Path):
    from PIL import UnidentifiedImageError

    from .preprocessing import open_image

    try:
        return open_image(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"image {path} does not exist") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from None


def _converted(path: Path, convert):
    try:
        # The conversion takes any PIL mode (16-bit, palette, alpha, CMYK...) or refuses it (ValueError).
        return convert(_read(path))
    except ValueError as err:
        if str(err).startswith("cannot read image"):
            raise
        raise ValueError(f"cannot read image {path}: {err}") from None


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


def draw_top(image, top: list[dict]):
    """``image`` (PIL) as a uint8 3 x H x W tensor under a header listing its top classes and probabilities."""
    import numpy as np
    import torch
    from PIL import Image, ImageDraw, ImageFont

    from .preprocessing import to_model_mode

    picture = to_model_mode(image, "RGB")
    if picture.width < 256:  # a 28 x 28 picture would be narrower than its labels
        scale = math.ceil(256 / picture.width)
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    font = ImageFont.load_default()
    line = 14
    header = Image.new("RGB", (picture.width, line * len(top) + 6), "white")
    draw = ImageDraw.Draw(header)
    for row, entry in enumerate(top):
        draw.text((4, 3 + row * line), f"{100 * entry['probability']:5.1f}%  {entry['label']}", fill="black", font=font)
    canvas = Image.new("RGB", (picture.width, header.height + picture.height), "white")
    canvas.paste(header, (0, 0))
    canvas.paste(picture, (0, header.height))
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1)


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

    _check_count(topk, "--topk")
    _check_count(batch_size, "--batch-size")
    min_score = check_min_score(min_score)
    target = resolve_device(device)
    model = load_model(directory).to(target).eval()
    task = getattr(model, "task", "classification")
    if task == "classification" and not model.num_classes:
        raise ValueError(f"{directory} holds a model without a classifier (num_classes 0); nothing to predict")
    paths = expand_images(images, exclude=save)
    pictures = _Pictures(save, overwrite, str(directory)) if save is not None else None
    run = _classify if task == "classification" else _dense
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        names = pictures.names(chunk) if pictures is not None else [None] * len(chunk)
        yield from run(model, chunk, names, target, topk=topk, min_score=min_score)


def _save(picture, name) -> None:
    from .data.show import save_png

    save_png(picture, name)


def _classify(model, paths: list[Path], names: list, target, *, topk: int, **_) -> Iterator[dict]:
    import torch

    from .preprocessing import default_preprocessing

    transform = (model.preprocessing or default_preprocessing(model.in_chans)).transform()
    batch = torch.stack([_converted(path, transform) for path in paths])
    with torch.inference_mode():
        probs = model(batch.to(target)).softmax(-1).cpu()
    values, indices = probs.topk(min(topk, model.num_classes), dim=-1)
    labels = model.labels
    for path, name, vals, idxs in zip(paths, names, values.tolist(), indices.tolist(), strict=True):
        top = [{"index": i, "label": labels[i] if labels else f"class {i}", "probability": v}
               for v, i in zip(vals, idxs, strict=True)]  # fmt: skip
        result = {"image": str(path), "top": top}
        if name is not None:
            _save(draw_top(_read(path), top), name)  # read again: the chunk keeps no pictures meanwhile
            result["picture"] = str(name)
        yield result


def _dense(model, paths: list[Path], names: list, target, *, min_score: float, **_) -> Iterator[dict]:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torchvision.transforms.functional import pil_to_tensor

    from .data.show import draw_sample
    from .preprocessing import default_preprocessing, to_model_mode
    from .tasks.segmentation import predict_labels

    pre = model.preprocessing or default_preprocessing(model.in_chans)
    labels = model.labels or [f"class {i}" for i in range(model.num_classes)]
    mean = torch.tensor(pre.mean).view(-1, 1, 1)
    std = torch.tensor(pre.std).view(-1, 1, 1)
    mode = "L" if model.in_chans == 1 else "RGB"
    images = [pil_to_tensor(_converted(path, lambda image: to_model_mode(image, mode))) for path in paths]
    inputs = []
    for image in images:  # each resized whole to the model's input
        x = F.interpolate(image[None].float() / 255, size=pre.input_size, mode="bilinear", antialias=True)[0]
        if pre.channel_order == "BGR":
            x = x.flip(0)
        inputs.append((x * pre.value_range - mean) / std)
    batch = torch.stack(inputs).to(target)
    with torch.inference_mode():
        outputs = model.detect(batch) if model.task == "detection" else model(batch)
    for k, (path, name, image) in enumerate(zip(paths, names, images, strict=True)):
        height, width = image.shape[-2:]
        if model.task == "detection":
            found = outputs[k]
            keep = found["scores"] >= min_score
            scale = torch.tensor([width / pre.input_size[1], height / pre.input_size[0]] * 2)
            boxes = found["boxes"][keep].cpu() * scale
            ids = found["labels"][keep].cpu()
            scores = found["scores"][keep].cpu()
            result = {"image": str(path), "detections": [
                {"box": [round(v, 1) for v in box], "label": labels[i], "index": i, "score": round(s, 4)}
                for box, i, s in zip(boxes.tolist(), ids.tolist(), scores.tolist(), strict=True)
            ]}  # fmt: skip
            drawn = {"boxes": boxes, "labels": ids, "scores": scores}  # the picture shows each box's score
        else:
            with torch.inference_mode():
                drawn = predict_labels(outputs[k : k + 1].float(), (height, width))[0].cpu()
            counts = torch.bincount(drawn.flatten(), minlength=len(labels)).tolist()
            dtype = np.uint8 if len(labels) <= 256 else np.int32
            result = {"image": str(path), "mask": drawn.numpy().astype(dtype),
                      "pixels": {labels[c]: n for c, n in enumerate(counts) if n}}  # fmt: skip
        if name is not None:
            with warnings.catch_warnings():  # torchvision warns about an image without boxes
                warnings.simplefilter("ignore", UserWarning)
                picture = draw_sample(image, drawn, labels, model.task)
            _save(picture, name)
            result["picture"] = str(name)
        yield result


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
