"""Classify images with a model directory, applying the preprocessing its weights expect."""

from __future__ import annotations

import math
from pathlib import Path


def check_min_score(min_score: float) -> float:
    """A detection score threshold: a finite number from 0 to 1 (nan or 2 would hide every box, silently)."""
    try:
        value = float(min_score)
    except (TypeError, ValueError):
        raise ValueError(f"--min-score takes a number from 0 to 1, got {min_score!r}") from None
    if not (math.isfinite(value) and 0 <= value <= 1):
        raise ValueError(f"--min-score takes a number from 0 to 1 (a detection score), got {min_score!r}")
    return value


def predict(directory: str | Path, images: list[str | Path], topk: int = 5, device: str = "cpu") -> list[dict]:
    """Top-``topk`` classes per image: ``[{"image", "top": [{"index", "label", "probability"}]}]``.

    ``device``: "cpu", "cuda" or "cuda:N".
    """
    import torch
    from PIL import UnidentifiedImageError

    from .devices import resolve_device
    from .io import load_model
    from .preprocessing import default_preprocessing, open_image

    target = resolve_device(device)
    if topk < 1:
        raise ValueError(f"--topk must be >= 1, got {topk}")
    model = load_model(directory)
    if not model.num_classes:
        raise ValueError(f"{directory} holds a model without a classifier (num_classes 0); nothing to predict")
    transform = (model.preprocessing or default_preprocessing(model.in_chans)).transform()
    batch = []
    for path in images:
        try:
            # The transform converts any PIL mode (16-bit, palette, alpha, CMYK...) or refuses it (ValueError).
            batch.append(transform(open_image(path)))
        except FileNotFoundError:
            raise FileNotFoundError(f"image {path} does not exist") from None
        except (UnidentifiedImageError, OSError, ValueError) as err:
            raise ValueError(f"cannot read image {path}: {err}") from None
    with torch.inference_mode():
        probs = model.to(target)(torch.stack(batch).to(target)).softmax(-1).cpu()
    k = min(topk, model.num_classes)
    values, indices = probs.topk(k, dim=-1)
    labels = model.labels
    results = []
    for path, vals, idxs in zip(images, values.tolist(), indices.tolist(), strict=True):
        top = [{"index": i, "label": labels[i] if labels else f"class {i}", "probability": v}
               for v, i in zip(vals, idxs, strict=True)]  # fmt: skip
        results.append({"image": str(path), "top": top})
    return results


def predict_dense(
    directory: str | Path, images: list[str | Path], *, save: str | Path | None = None, device: str = "cpu",
    min_score: float = 0.3, overwrite: bool = False,
) -> list[dict]:  # fmt: skip
    """Detections or masks per image from a detection or segmentation model directory.

    Each image is resized whole to the model's input; boxes come back in the image's own pixels
    (``[{"image", "detections": [{"box", "label", "index", "score"}]}]``, scores >= ``min_score``), masks
    as class pixel counts (``[{"image", "pixels": {label: n}}]``). ``save``: a new or empty directory that
    gets each image with its boxes drawn, or its mask as a colour overlay, as ``<stem>.png``.
    """
    import torch
    import torch.nn.functional as F
    from PIL import UnidentifiedImageError
    from torchvision.transforms.functional import pil_to_tensor

    from .data.show import draw_sample, save_png
    from .devices import resolve_device
    from .io import check_output, load_model
    from .preprocessing import open_image, to_model_mode
    from .tasks.segmentation import predict_labels

    min_score = check_min_score(min_score)
    target = resolve_device(device)
    model = load_model(directory).to(target).eval()
    task = getattr(model, "task", "classification")
    if save is not None:
        check_output(save, overwrite=overwrite, what="a predictions directory")
    pre, labels = model.preprocessing, model.labels or [f"class {i}" for i in range(model.num_classes)]
    mean = torch.tensor(pre.mean).view(-1, 1, 1)
    std = torch.tensor(pre.std).view(-1, 1, 1)
    results, pictures = [], {}
    for path in images:
        try:
            image = pil_to_tensor(to_model_mode(open_image(path), "L" if model.in_chans == 1 else "RGB"))
        except FileNotFoundError:
            raise FileNotFoundError(f"image {path} does not exist") from None
        except (UnidentifiedImageError, OSError, ValueError) as err:
            raise ValueError(f"cannot read image {path}: {err}") from None
        height, width = image.shape[-2:]
        x = F.interpolate(image[None].float() / 255, size=pre.input_size, mode="bilinear", antialias=True)
        x = ((x - mean) / std).to(target)
        with torch.inference_mode():
            if task == "detection":
                found = model.detect(x)[0]
                keep = found["scores"] >= min_score
                scale = torch.tensor([width / pre.input_size[1], height / pre.input_size[0]] * 2)
                boxes = found["boxes"][keep].cpu() * scale
                ids = found["labels"][keep].cpu()
                results.append({"image": str(path), "detections": [
                    {"box": [round(v, 1) for v in box], "label": labels[i], "index": i, "score": round(s, 4)}
                    for box, i, s in zip(boxes.tolist(), ids.tolist(), found["scores"][keep].tolist(), strict=True)
                ]})  # fmt: skip
                drawn = {"boxes": boxes, "labels": ids}
            else:
                drawn = predict_labels(model(x), (height, width))[0].cpu()
                counts = torch.bincount(drawn.flatten(), minlength=len(labels)).tolist()
                results.append({"image": str(path), "pixels": {labels[k]: n for k, n in enumerate(counts) if n}})
        pictures[Path(path).stem] = draw_sample(image, drawn, labels, task)
    if save is not None:
        out = Path(save)
        out.mkdir(parents=True, exist_ok=True)
        for stem, picture in pictures.items():
            save_png(picture, out / f"{stem}.png")
    return results
