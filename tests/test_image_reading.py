"""16-bit and transparent images read the same through the COCO and VOC loaders as through ``predict``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

from mobilenets.data import load_detection_data, load_segmentation_data
from mobilenets.preprocessing import open_image, to_model_mode

SIDE = 16
NAMES = ("deep.png", "clear.png")


def _write_images(folder: Path) -> None:
    """A 16-bit grayscale ramp (mode I;16) and an RGBA image whose left half is wholly transparent black."""
    folder.mkdir(parents=True)
    ramp = (np.arange(SIDE * SIDE, dtype=np.uint16).reshape(SIDE, SIDE) * 257).astype(np.uint16)
    Image.fromarray(ramp).save(folder / NAMES[0])
    rgba = np.zeros((SIDE, SIDE, 4), np.uint8)
    rgba[:, :, 0] = 200  # red, seen where opaque; black and transparent on the left
    rgba[:, :, 3] = 255
    rgba[:, : SIDE // 2] = 0
    Image.fromarray(rgba, mode="RGBA").save(folder / NAMES[1])


def _coco(root: Path) -> Path:
    (root / "annotations").mkdir(parents=True)
    for split in ("train", "val"):
        _write_images(root / "images" / split)
        doc = {"images": [{"id": i, "file_name": n, "width": SIDE, "height": SIDE} for i, n in enumerate(NAMES)],
               "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [2, 2, 8, 8], "iscrowd": 0}
                               for i in range(len(NAMES))],
               "categories": [{"id": 1, "name": "thing"}]}  # fmt: skip
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))
    return root


def _voc(root: Path) -> Path:
    for split in ("train", "val"):
        _write_images(root / "images" / split)
        (root / "masks" / split).mkdir(parents=True)
        for name in NAMES:
            Image.fromarray(np.ones((SIDE, SIDE), np.uint8), mode="L").save(root / "masks" / split / name)
    return root


def _predicts_reading(path: Path, mode: str) -> torch.Tensor:
    """The pixels ``predict`` reads from ``path``: mobilenets.predict opens and converts them this way."""
    return pil_to_tensor(to_model_mode(open_image(path), mode))


@pytest.mark.parametrize("task", ["detection", "segmentation"])
@pytest.mark.parametrize("in_chans", [3, 1])
def test_loaders_read_16_bit_and_transparent_images_as_predict_does(tmp_path, task, in_chans):
    if task == "detection":
        pytest.importorskip("pycocotools")
        data = load_detection_data(_coco(tmp_path / "coco"), resolution=SIDE, augment="none", in_chans=in_chans)
    else:
        data = load_segmentation_data(_voc(tmp_path / "voc"), resolution=SIDE, augment="none", in_chans=in_chans)
    mode = "L" if in_chans == 1 else "RGB"
    wrong = []
    for split, dataset in (("train", data.train), ("val", data.val)):
        for index in range(len(dataset)):
            path = _image_path(dataset, index)
            expected = _predicts_reading(path, mode)
            assert expected.float().mean() < 200  # neither image is white
            image = dataset[index][0]  # the loader's float image in [0, 1], channels repeated for in_chans 1
            if not torch.equal((image[: expected.shape[0]] * 255).round().to(torch.uint8), expected):
                wrong.append(f"{split}/{path.name}")
            if path.name == NAMES[1]:  # transparent pixels are white, as a viewer (and predict) shows them
                assert (expected[..., : SIDE // 2] == 255).all()
    assert wrong == []


def _image_path(dataset, index: int) -> Path:
    record = dataset.records[index]
    return record.path if hasattr(record, "path") else record.image


@pytest.mark.parametrize("workers", [0, 2])
def test_an_unreadable_validation_image_is_counted_once_in_the_report(tmp_path, workers):
    """Truncated after its header (so loading keeps it), it fails at every pass over val: the report says 1."""
    from mobilenets.training import TrainConfig, train

    root = _voc(tmp_path / "voc")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (SIDE, SIDE, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    (root / "images" / "val" / "cut.png").write_bytes((tmp_path / "x.png").read_bytes()[:120])
    Image.fromarray(np.ones((SIDE, SIDE), np.uint8), mode="L").save(root / "masks" / "val" / "cut.png")
    config = TrainConfig(model="lraspp_mobilenet_v3_small_100", output=str(tmp_path / "run"), data=str(root),
                         resolution=64, batch_size=2, epochs=2, workers=workers, threads=1, progress=False,
                         tensorboard=False)  # fmt: skip
    train(config)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["skipped"]["val"].get("unreadable_image") == 1, report["skipped"]
