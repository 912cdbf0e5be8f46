"""predict on detection and segmentation model directories: boxes in the image's own pixels, masks, pictures."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import mobilenets
from mobilenets.cli import main
from mobilenets.preprocessing import Preprocessing


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "wide.png"
    Image.fromarray((np.random.default_rng(0).random((100, 200, 3)) * 255).astype(np.uint8)).save(path)
    return path


def _saved(tmp_path, name, num_classes):
    model = mobilenets.create_model(name, num_classes=num_classes)
    model.labels = ["background"] + [f"c{i}" for i in range(1, num_classes)]
    model.preprocessing = Preprocessing(input_size=(96, 96), resize=0, mean=(0.5,) * 3, std=(0.5,) * 3)
    mobilenets.save_model(model, tmp_path / name)
    return tmp_path / name


def test_detector_boxes_are_in_the_images_pixels_and_drawn(tmp_path, image, capsys):
    model_dir = _saved(tmp_path, "ssdlite_mobilenet_v3_small_100", 4)
    assert (
        main(["predict", str(model_dir), str(image), "--json", "--min-score", "0", "--save", str(tmp_path / "p")]) == 0
    )
    [result] = json.loads(capsys.readouterr().out)
    boxes = np.array([d["box"] for d in result["detections"]])
    assert len(boxes) and boxes[:, 2].max() <= 200 and boxes[:, 3].max() <= 100 and boxes[:, 2].max() > 96
    assert {d["label"] for d in result["detections"]} <= {"c1", "c2", "c3"}
    assert Image.open(tmp_path / "p" / "wide.png").size == (600, 300)  # enlarged x3: a short side >= 256 px
    # the pictures directory is never replaced unasked
    assert main(["predict", str(model_dir), str(image), "--save", str(tmp_path / "p")]) == 2


def test_segmenter_mask_covers_the_image(tmp_path, image, capsys):
    model_dir = _saved(tmp_path, "lraspp_mobilenet_v3_small_100", 3)
    assert main(["predict", str(model_dir), str(image), "--json", "--save", str(tmp_path / "s")]) == 0
    [result] = json.loads(capsys.readouterr().out)
    assert sum(result["pixels"].values()) == 100 * 200
    width, height = Image.open(tmp_path / "s" / "wide.png").size
    assert width == 600 and height > 300  # enlarged x3, a legend under it
    classifier = tmp_path / "cls"
    mobilenets.save_model(mobilenets.create_model("mobilenet_v2_035", num_classes=3), classifier)
    assert main(["predict", str(classifier), str(image), "--save", str(tmp_path / "x")]) == 2
