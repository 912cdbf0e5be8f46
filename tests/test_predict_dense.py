"""predict on detection and segmentation model directories: boxes in the image's own pixels, masks, pictures."""

from __future__ import annotations

import json
from pathlib import Path

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


def _lines(out: str) -> list[dict]:
    """--json prints one object per image, one per line."""
    return [json.loads(line) for line in out.splitlines()]


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
    [result] = _lines(capsys.readouterr().out)
    boxes = np.array([d["box"] for d in result["detections"]])
    assert len(boxes) and boxes[:, 2].max() <= 200 and boxes[:, 3].max() <= 100 and boxes[:, 2].max() > 96
    assert {d["label"] for d in result["detections"]} <= {"c1", "c2", "c3"}
    assert Image.open(tmp_path / "p" / "wide.png").size == (600, 300)  # enlarged x3: a short side >= 256 px
    # the pictures directory is never replaced unasked
    assert main(["predict", str(model_dir), str(image), "--save", str(tmp_path / "p")]) == 2


def test_segmenter_mask_covers_the_image(tmp_path, image, capsys):
    model_dir = _saved(tmp_path, "lraspp_mobilenet_v3_small_100", 3)
    assert main(["predict", str(model_dir), str(image), "--json", "--save", str(tmp_path / "s")]) == 0
    [result] = _lines(capsys.readouterr().out)
    assert sum(result["pixels"].values()) == 100 * 200
    width, height = Image.open(tmp_path / "s" / "wide.png").size
    assert width == 600 and height > 300  # enlarged x3, a legend under it


@pytest.mark.parametrize("score", ["nan", "2", "-0.1", "inf"])
def test_min_score_outside_0_to_1_is_a_one_line_error(tmp_path, image, score, capsys):
    model_dir = _saved(tmp_path, "ssdlite_mobilenet_v3_small_100", 4)
    assert main(["predict", str(model_dir), str(image), "--min-score", score]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--min-score takes a number from 0 to 1" in err


# --- many images: batches, folders and globs, streamed results, pictures for every task ---------------------


def _classifier(tmp_path):
    model = mobilenets.create_model("mobilenet_v1_025", num_classes=3, in_chans=1)
    pre = Preprocessing(input_size=(32, 32), resize=0, channel_order="L", mean=(0.5,), std=(0.5,))
    mobilenets.save_model(model, tmp_path / "cls", labels=["ant", "bee", "cat"], preprocessing=pre)
    return tmp_path / "cls"


def _images(root, names, size=(40, 30)):
    rng = np.random.default_rng(1)
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)).save(root / name)
    return root


def test_predict_runs_in_batches_and_streams_its_results(tmp_path, monkeypatch, capsys):
    import mobilenets.io
    from mobilenets.predict import iter_predictions

    model_dir = _classifier(tmp_path)
    images = [str(p) for p in sorted(_images(tmp_path / "in", [f"{k}.png" for k in range(5)]).iterdir())]
    load, sizes = mobilenets.io.load_model, []

    def spy(directory, **kwargs):
        model = load(directory, **kwargs)
        model.register_forward_pre_hook(lambda module, args: sizes.append(len(args[0])))
        return model

    monkeypatch.setattr(mobilenets.io, "load_model", spy)
    stream = iter_predictions(model_dir, images, topk=2, batch_size=2)
    first = next(stream)
    assert first["image"] == images[0] and sizes == [2]  # one batch so far, not every image at once
    assert [r["image"] for r in stream] == images[1:] and sizes == [2, 2, 1]
    assert main(["predict", str(model_dir), *images, "--json", "--batch-size", "2", "--topk", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["image"] for line in lines] == images  # JSON lines: one object per image
    assert main(["predict", str(model_dir), images[0], "--batch-size", "0"]) == 2
    assert "--batch-size takes a whole number >= 1" in capsys.readouterr().err


def test_predict_takes_folders_and_globs(tmp_path, capsys):
    model_dir = _classifier(tmp_path)
    root = _images(tmp_path / "in", ["b.jpg", "a.png", "sub/c.png"])
    (root / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()

    def predicted(*inputs):
        assert main(["predict", str(model_dir), *inputs, "--json", "--topk", "1"]) == 0
        return [json.loads(line)["image"] for line in capsys.readouterr().out.splitlines()]

    assert predicted(str(root)) == [str(root / "a.png"), str(root / "b.jpg"), str(root / "sub" / "c.png")]
    assert predicted(str(root / "*.png")) == [str(root / "a.png")]
    assert predicted(str(root / "**" / "*.png"), str(root / "b.jpg")) == [
        str(root / "a.png"), str(root / "sub" / "c.png"), str(root / "b.jpg")]  # fmt: skip
    for bad, message in [(root / "*.gif", "no image matches"), (tmp_path / "empty", "holds no images"),
                         (root / "missing.png", "does not exist")]:  # fmt: skip
        assert main(["predict", str(model_dir), str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err


def test_predict_saves_a_picture_per_image_even_of_one_stem(tmp_path, image, capsys):
    """Classifiers draw their top labels too; two inputs named a.png keep two pictures."""
    model_dir = _classifier(tmp_path)
    _images(tmp_path, ["x/a.png", "y/a.png", "y/a.jpg"], size=(28, 28))
    inputs = [str(tmp_path / p) for p in ("x/a.png", "y/a.png", "y/a.jpg")]
    assert main(["predict", str(model_dir), *inputs, "--json", "--topk", "2", "--save", str(tmp_path / "p")]) == 0
    results = _lines(capsys.readouterr().out)
    pictures = [Path(r["picture"]).name for r in results]
    assert pictures == ["a.png", "a-2.png", "a-3.png"]
    for name in pictures:
        width, height = Image.open(tmp_path / "p" / name).size
        assert width >= 256 and height > width  # scaled up, with the top labels as a header above
    detector = _saved(tmp_path, "ssdlite_mobilenet_v3_small_100", 4)
    twin = tmp_path / "z" / image.name
    twin.parent.mkdir()
    twin.write_bytes(image.read_bytes())
    assert main(["predict", str(detector), str(image), str(twin), "--save", str(tmp_path / "d")]) == 0
    assert sorted(p.name for p in (tmp_path / "d").glob("*.png")) == ["wide-2.png", "wide.png"]


def test_predict_save_overwrite_replaces_only_its_own_pictures(tmp_path, capsys):
    model_dir = _classifier(tmp_path)
    _images(tmp_path, ["a.png", "b.png", "keep.png"])
    out = tmp_path / "p"
    assert main(["predict", str(model_dir), str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--save", str(out)]) == 0
    assert main(["predict", str(model_dir), str(tmp_path / "a.png"), "--save", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    (out / "mine.txt").write_text("mine")
    (out / "keep.png").write_bytes(b"my own picture")
    argv = ["predict", str(model_dir), str(tmp_path / "b.png"), str(tmp_path / "keep.png"), "--save", str(out)]
    assert main([*argv, "--overwrite"]) == 0
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert names == ["b.png", "keep-2.png", "keep.png", "mine.txt"]  # a.png was ours: gone; the user's files stay
    assert (out / "keep.png").read_bytes() == b"my own picture" and (out / "mine.txt").read_text() == "mine"
    assert main([*argv, "--overwrite"]) == 0  # again: the same names, nothing piles up
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == names
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "x.png").write_bytes(b"x")
    assert main([*argv[:-1], str(theirs), "--overwrite"]) == 2  # not a predictions directory: never replaced
    assert "not empty and is not a predictions directory" in capsys.readouterr().err
    assert [p.name for p in theirs.iterdir()] == ["x.png"]


def test_predict_dense_returns_the_mask_in_the_images_pixels(tmp_path, image):
    from mobilenets.predict import predict_dense

    model_dir = _saved(tmp_path, "lraspp_mobilenet_v3_small_100", 3)
    [result] = predict_dense(model_dir, [image])
    mask = result["mask"]
    assert mask.shape == (100, 200) and mask.max() < 3
    counts = np.bincount(mask.ravel(), minlength=3)
    assert result["pixels"] == {label: int(n) for label, n in zip(["background", "c1", "c2"], counts, strict=True) if n}
