"""Classify images with a model directory, applying the preprocessing its weights expect."""

from __future__ import annotations

from pathlib import Path


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
