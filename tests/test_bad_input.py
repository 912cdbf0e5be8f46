"""Input we read: image modes, eval's data, quantize's splits, the CLI's user errors, model options, MD5s."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mobilenets
from mobilenets import create_model, save_model
from mobilenets.cli import main
from mobilenets.errors import UsageError
from mobilenets.preprocessing import Preprocessing, open_image, to_model_mode

# 1-channel, no resize, no normalization: the tensor is the 8-bit image / 255.
RAW_L = Preprocessing((32, 32), 0, channel_order="L", mean=(0.0,), std=(1.0,))
TINY = "mobilenet_v3_small_minimal_100"


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def make_idx(root: Path, splits: dict[str, int], classes: int = 3) -> Path:
    """IDX splits whose image i is the constant i (train) or 128 + i (test): an image tells which one it was."""
    root.mkdir(parents=True, exist_ok=True)
    for split, n in splits.items():
        prefix = "train" if split == "train" else "t10k"
        values = (np.arange(n) + (0 if split == "train" else 128)) % 256
        images = np.repeat(values.astype(np.uint8)[:, None, None], 28, 1).repeat(28, 2)
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % classes)
    return root


def ids(images: np.ndarray) -> set[int]:
    """The indices of preprocessed RAW_L images (their constant pixel value)."""
    return {round(float(img[0, 16, 16]) * 255) for img in images}  # the centre: 28x28 is padded to 32x32


# --- 7: every PIL mode, one conversion for predict and ImageFolder -----------------------------


def gradient16(path: Path) -> np.ndarray:
    """A 16-bit PNG whose columns are v * 257 (v = 0..255, the exact 16-bit spelling of 8-bit v)."""
    values = np.tile(np.arange(256, dtype=np.uint16) * 257, (32, 1))
    Image.fromarray(values).save(path)
    return np.tile(np.arange(256, dtype=np.uint8), (32, 1))


def test_16bit_png_reads_as_its_8bit_values(tmp_path):
    expected = gradient16(tmp_path / "g16.png")
    image = open_image(tmp_path / "g16.png")
    assert image.mode.startswith("I")  # Pillow's own convert("L") clips this at 255: a white image
    assert np.array_equal(np.asarray(to_model_mode(image, "L")), expected)
    rgb = np.asarray(to_model_mode(image, "RGB"))
    assert rgb.shape == (32, 256, 3) and all(np.array_equal(rgb[..., c], expected) for c in range(3))
    tensor = Preprocessing((32, 256), 0, channel_order="L", mean=(0.0,), std=(1.0,)).transform()(image)
    assert torch.allclose(tensor[0, 0] * 255, torch.arange(256.0), atol=1e-3)


def _palette(transparent: bool) -> Image.Image:
    image = Image.new("P", (2, 1))
    image.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    image.putpixel((1, 0), 1)
    if transparent:
        image.info["transparency"] = 0  # palette entry 0 is see-through: composited over white
    return image


@pytest.mark.parametrize(
    "make, mode, expected",
    [
        (lambda: _palette(False), "RGB", [(10, 20, 30), (200, 100, 50)]),
        (lambda: _palette(True), "RGB", [(255, 255, 255), (200, 100, 50)]),
        (lambda: Image.new("PA", (1, 1), (0, 255)), "RGB", [(0, 0, 0)]),
        (lambda: Image.new("LA", (2, 1), (90, 255)), "L", [90, 90]),
        (lambda: Image.new("LA", (1, 1), (90, 0)), "L", [255]),  # fully transparent: the white behind it
        (lambda: Image.new("RGBA", (1, 1), (0, 0, 255, 128)), "RGB", [(127, 127, 255)]),
        (lambda: Image.new("CMYK", (1, 1), (0, 255, 255, 0)), "RGB", [(255, 0, 0)]),
        (lambda: Image.new("1", (1, 1), 1), "L", [255]),
        (lambda: Image.new("RGB", (1, 1), (255, 0, 0)), "L", [76]),  # ITU-R 601-2 luma
        (lambda: Image.new("L", (1, 1), 7), "RGB", [(7, 7, 7)]),
        (lambda: Image.fromarray(np.full((1, 1), 65535, np.int32)), "L", [255]),  # mode I as 16-bit
        (lambda: Image.fromarray(np.full((1, 1), 0.5, np.float32)), "L", [128]),  # mode F as [0, 1]
    ],
)
def test_every_mode_converts(make, mode, expected):
    out = to_model_mode(make(), mode)
    pixels = np.asarray(out).reshape(-1, 3 if mode == "RGB" else 1)
    assert out.mode == mode and [tuple(p) if mode == "RGB" else p[0] for p in pixels.tolist()] == expected


@pytest.mark.parametrize(
    "image, message",
    [
        (Image.fromarray(np.full((1, 1), 300.0, np.float32)), r"only \[0, 1\]"),
        (Image.fromarray(np.full((1, 1), -5, np.int32)), "only 0-65535"),
    ],
)
def test_unreadable_ranges_are_refused(image, message):
    with pytest.raises(ValueError, match=message):
        to_model_mode(image, "L")


def test_predict_and_image_folder_read_16bit_like_8bit(tmp_path):
    from mobilenets.predict import predict
    from mobilenets.training import load_data

    rng = np.random.default_rng(0)
    values = rng.integers(0, 256, (2, 32, 32))
    for split in ("train", "val"):
        for k in range(2):
            (tmp_path / "data" / split / f"c{k}").mkdir(parents=True)
            Image.fromarray((values[k] * 257).astype(np.uint16)).save(tmp_path / "data" / split / f"c{k}" / "a.png")
            Image.fromarray(values[k].astype(np.uint8)).save(tmp_path / f"c{k}_8bit.png")
    # ImageFolder: the loader must not convert to RGB before our conversion (torchvision's default does).
    spec = load_data(tmp_path / "data", preprocessing=RAW_L)
    for k in range(2):
        x, target = spec.val.dataset[k]
        assert target == k and torch.allclose(x[0] * 255, torch.from_numpy(values[k]).float(), atol=1e-3)
    # predict: the 16-bit file gives the same probabilities as its 8-bit twin.
    torch.manual_seed(0)
    model = create_model(TINY, num_classes=2, in_chans=1).eval()
    save_model(model, tmp_path / "m", preprocessing=RAW_L)
    images = [tmp_path / "data" / "val" / "c0" / "a.png", tmp_path / "c0_8bit.png"]
    sixteen, eight = predict(tmp_path / "m", images, topk=2)
    assert sixteen["top"] == eight["top"]


# --- 8: eval takes a run's data from run.json; a bare model directory needs --data ---------------


def _run_dir(tmp_path: Path) -> tuple[Path, Path]:
    data = make_idx(tmp_path / "idx", {"train": 12, "test": 9})
    torch.manual_seed(0)
    model = create_model(TINY, num_classes=3, in_chans=1)
    save_model(model, tmp_path / "run" / "best", labels=["0", "1", "2"], preprocessing=RAW_L)
    config = {"model": TINY, "output": str(tmp_path / "run"), "data": str(data)}
    (tmp_path / "run" / "run.json").write_text(json.dumps({"config": config}))
    return tmp_path / "run", data


def test_eval_of_a_model_dir_needs_data(tmp_path, capsys):
    run, _ = _run_dir(tmp_path)
    (run / "run.json").unlink()  # now best/ is a bare model directory
    assert main(["eval", str(run / "best")]) == 2
    err = capsys.readouterr().err.strip()
    assert "pass --data" in err and "not a run" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("sub", ["", "best"])
def test_eval_of_a_run_uses_its_data(tmp_path, capsys, sub):
    run, data = _run_dir(tmp_path)
    assert main(["eval", str(run / sub), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["data"] == str(data) and metrics["data_from"] == "run.json" and metrics["images"] == 9
    shutil.rmtree(data)  # the run's data has moved: say so, and how to point at it
    assert main(["eval", str(run / sub)]) == 2
    assert "pass --data" in capsys.readouterr().err


# --- 9: quantize never evaluates on calibration or fallback-validation images --------------------


@pytest.mark.parametrize("splits", [{"train": 60}, {"test": 60}, {"train": 40, "test": 20}])
def test_quantize_splits_are_disjoint(tmp_path, splits):
    from mobilenets.deploy.quantize import split_images

    data = make_idx(tmp_path, splits)
    calib, evaluation, held_out = split_images(data, RAW_L, None, calibration=10, eval_images=15, validation=100)
    sets = [ids(calib.images), ids(evaluation.images), ids(held_out.images)]
    assert [len(s) for s in sets[:2]] == [10, 15] and sets[2]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    if len(splits) == 2:  # evaluation is the test split, calibration and validation the train split
        assert evaluation.source.endswith("t10k-images-idx3-ubyte.gz") and calib.source != evaluation.source


def test_quantize_refuses_when_calibration_takes_every_image(tmp_path):
    from mobilenets.deploy.quantize import split_images

    data = make_idx(tmp_path, {"train": 8})
    with pytest.raises(ValueError, match="fewer calibration images"):
        split_images(data, RAW_L, None, calibration=8, eval_images=5, validation=0)
    with pytest.raises(ValueError, match="fewer calibration images"):
        split_images(data, RAW_L, None, calibration=20, eval_images=5, validation=0)


def test_quantize_model_evaluates_on_held_out_images(tmp_path, monkeypatch):
    """quantize_model itself on a train-only IDX dir: the images it scores never calibrated or chose fallbacks."""
    import mobilenets.deploy.exporter as export_mod
    import mobilenets.deploy.quantize as q

    seen: dict[str, list[set[int]]] = {"calibration": [], "scored": []}

    def fake_quantize(fp32, out, calibration, **kwargs):
        seen["calibration"].append(ids(np.concatenate(list(calibration))))
        Path(out).write_bytes(b"int8")
        return []

    def fake_top1(run, images, labels, what=""):
        seen["scored"].append(ids(images))
        return 50.0

    monkeypatch.setattr(export_mod, "export_onnx", lambda model, path, **kw: Path(path).write_bytes(b"fp32"))
    monkeypatch.setattr(q, "quantize_onnx", fake_quantize)
    monkeypatch.setattr(q, "ort_runner", lambda path, threads: None)
    monkeypatch.setattr(q, "early_convs", lambda path, count: [])
    monkeypatch.setattr(q, "_top1", fake_top1)
    monkeypatch.setattr(q, "_latency_ms", lambda runners, x: {"fp32": 1.0, "int8": 1.0})
    model = create_model(TINY, num_classes=3, in_chans=1)
    model.preprocessing = RAW_L
    data = make_idx(tmp_path / "idx", {"train": 60})
    report = q.quantize_model(model, tmp_path / "m.int8.onnx", data, calibration=10, eval_images=20, validation=30)
    calib = seen["calibration"][0]
    validation, evaluation = seen["scored"][0], seen["scored"][-1]  # fp32 then int8 on each set
    assert len(calib) == 10 and len(evaluation) == 20 and report.eval_images == 20
    assert not (evaluation & calib or evaluation & validation or validation & calib)


# --- 10: user errors are one line (exit 2); our bugs are tracebacks; options checked where they enter ---


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bad value"),
        UsageError("bad value"),
        FileNotFoundError(2, "No such file or directory", "/x/y"),
        FileExistsError(17, "File exists", "/x/y"),
        IsADirectoryError(21, "Is a directory", "/x/y"),
        NotADirectoryError(20, "Not a directory", "/x/y"),
        PermissionError(13, "Permission denied", "/x/y"),
    ],
)
def test_user_errors_are_one_line(monkeypatch, capsys, error):
    import mobilenets.commands.models as commands

    def fail(args):
        raise error

    monkeypatch.setattr(commands, "cmd_list", fail)
    assert main(["list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mobilenets list: error: ") and len(err.strip().splitlines()) == 1
    assert ("bad value" if isinstance(error, ValueError) else "/x/y") in err


@pytest.mark.parametrize("error", [TypeError("bug"), KeyError("bug"), IndexError("bug"), AttributeError("bug")])
def test_our_bugs_are_tracebacks(monkeypatch, error):
    import mobilenets.commands.models as commands

    def fail(args):
        raise error

    monkeypatch.setattr(commands, "cmd_list", fail)
    with pytest.raises(type(error)):
        main(["list"])


def test_export_onto_a_directory_and_short_labels_are_user_errors(tmp_path, capsys):
    model = create_model(TINY, num_classes=3, in_chans=1)
    save_model(model, tmp_path / "m", preprocessing=RAW_L)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    assert main(["export", str(tmp_path / "m"), "-o", str(tmp_path / "taken")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "taken" in err
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["labels"] = ["a", "b"]  # three classes
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    Image.new("L", (32, 32)).save(tmp_path / "x.png")
    assert main(["predict", str(tmp_path / "m"), str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "2 labels for a model with 3 classes" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: mobilenets.mobilenet_v1(width_mult=float("nan")), r"width_mult .* \(0, 10\]"),
        (lambda: mobilenets.mobilenet_v2(width_mult=float("inf")), "width_mult"),
        (lambda: mobilenets.mobilenet_v3(width_mult=1e6), "width_mult"),  # would allocate until killed
        (lambda: mobilenets.mobilenet_v3(width_mult=0), "width_mult"),
        (lambda: mobilenets.shufflenet_v1(scale=float("nan")), "scale"),
        (lambda: create_model("mobilenet_v2_100", width_mult=-1.0), "width_mult"),
        (lambda: create_model("mobilenet_v2_100", in_chans=0), r"in_chans must be an integer >= 1"),
        (lambda: create_model("mobilenet_v1_100", num_classes=2.5), r"num_classes must be an integer >= 0"),
        (lambda: create_model("mobilenet_v1_100", num_classes=-1), "num_classes"),
        (lambda: create_model("shufflenet_v1_g3_100", drop_rate=-0.1), r"drop_rate .* \[0, 1\)"),
        (lambda: create_model("mobilenet_v3_small_100", drop_rate=float("nan")), "drop_rate"),
        (lambda: create_model("mobilenet_v3_small_100", groups=3), "it takes"),
        (lambda: create_model("mobilenet_v2_10"), "did you mean .*mobilenet_v2_100"),
        (lambda: create_model("resnet50"), "mobilenet_v1, mobilenet_v2, mobilenet_v3, shufflenet_v1"),
        (lambda: create_model(TINY).reset_classifier(2.5), "num_classes"),
    ],
)
def test_model_options_are_checked_where_they_enter(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(
    "fields, message",
    [({"mean": 5}, "invalid preprocessing"), ([224], "mapping"), ({"input_size": [0, 0]}, "input_size"),
     ({"std": [0.0, 1.0, 1.0]}, "std must not be 0")],
)  # fmt: skip
def test_preprocessing_of_a_config_is_checked(fields, message):
    with pytest.raises(ValueError, match=message):
        Preprocessing.from_dict(fields)


def test_options_reach_the_cli_as_one_line(tmp_path, capsys):
    data = make_idx(tmp_path / "idx", {"train": 40, "test": 10})
    argv = ["train", "-m", TINY, "-d", str(data), "-o", str(tmp_path / "run"), "--resolution", "8"]
    assert main(argv) == 2
    assert "--resolution 8 is too small" in capsys.readouterr().err
    assert main(["info", "resnet50"]) == 2
    assert "mobilenets list" in capsys.readouterr().err
    assert not math.isnan(create_model("mobilenet_v1_025", width_mult=0.25).options["width_mult"])


# --- the Fashion-MNIST MD5 check -----------------------------------------------------------------


def test_corrupt_fashion_mnist_file_fails_its_md5(tmp_path, monkeypatch):
    """A fake package directory with known MD5s: one flipped pixel byte (structure intact) is rejected."""
    from mobilenets.data import classification as data_mod

    package = make_idx(tmp_path / "fashion-mnist", {"train": 20, "test": 10})
    md5s = {path.name.removesuffix(".gz"): (hashlib.md5(path.read_bytes()).hexdigest(), "0" * 32)
            for path in package.iterdir()}  # fmt: skip
    monkeypatch.setattr(data_mod, "FASHION_MNIST_DIR", package)
    monkeypatch.setattr(data_mod, "FASHION_MNIST_MD5", md5s)
    assert len(data_mod.load_idx_dir(package)["train"][0]) == 20  # intact: accepted
    target = package / "t10k-images-idx3-ubyte.gz"
    raw = bytearray(gzip.decompress(target.read_bytes()))
    raw[-1] ^= 0xFF
    target.write_bytes(gzip.compress(bytes(raw)))
    data_mod.read_idx(target)  # still a well-formed IDX file: only the MD5 can tell
    with pytest.raises(ValueError, match="fails its MD5 check"):
        data_mod.load_idx_dir(package)
    with pytest.raises(ValueError, match="reinstall"):
        data_mod.load_data("fashion-mnist")
    other = tmp_path / "link"
    other.symlink_to(package)  # the same package by another name is checked too
    with pytest.raises(ValueError, match="fails its MD5 check"):
        data_mod.load_idx_dir(other)


# --- 11: a hand-edited config.json is refused where it is read, one line naming the file and field ---


def _edit(config: dict, path: list, value) -> dict:
    *parents, last = path
    node = config
    for key in parents:
        node = node[key]
    node[last] = value
    return config


@pytest.mark.parametrize(
    "path, value, message",
    [
        (["options"], None, "options must be an object"),
        (["options"], [1, 2], "options must be an object"),
        (["format_version"], "1", "format_version must be a whole number"),
        (["format_version"], 9, r"written by a newer mobilenets \(format 9\); this one reads up to format 1: upgrade"),
        (["family"], 3, "family must be a family name"),
        (["labels"], "abc", "labels must be a list"),
        (["labels"], [1, 2, 3], r"labels\[0\] must be a string"),
        (["options", "width_mult"], -1, "options: width_mult"),
        (["options", "num_features"], -5, r"options: num_features must be a whole number in \[1, 16384\]"),
        (["options", "num_features"], 10**9, "options: num_features"),  # can't allocate memory, before
        (["options", "stem_chs"], 10**9, "options: stem_chs"),
        (["options", "num_classes"], 10**10, "options: num_classes"),
        (["options", "blocks"], [{"kind": "conv", "in_chs": 16, "out_chs": 10**8, "stage": 0}],
         r"options: blocks\[0\].out_chs"),
        (["options", "blocks"], [7], r"options: blocks\[0\] must be a block spec"),
        (["preprocessing", "input_size"], [100000, 100000], "preprocessing: input_size must be at most 4096"),
        (["preprocessing", "resize"], 10**6, "preprocessing: .*resize at most 8192"),
    ],
)  # fmt: skip
def test_hand_edited_config_is_one_line_naming_file_and_field(tmp_path, capsys, path, value, message):
    import re

    model_dir = tmp_path / "m"
    save_model(create_model(TINY, num_classes=3, in_chans=1), model_dir, preprocessing=RAW_L)
    config_path = model_dir / "config.json"
    config_path.write_text(json.dumps(_edit(json.loads(config_path.read_text()), path, value)))
    with pytest.raises(ValueError, match=message):
        mobilenets.load_model(model_dir)
    assert main(["info", str(model_dir)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and re.search(message, err), err
    assert str(config_path) in err and "not a model directory" not in err


@pytest.mark.parametrize(
    "content, message",
    [(b"[1, 2]", "holds a JSON list, not a mobilenets config"), (b'{"family": "\xff", "options": {}}', "not UTF-8")],
)  # fmt: skip
def test_config_that_is_not_an_object_or_not_utf8_is_named(tmp_path, capsys, content, message):
    model_dir = tmp_path / "m"
    save_model(create_model(TINY, num_classes=3, in_chans=1), model_dir, preprocessing=RAW_L)
    (model_dir / "config.json").write_bytes(content)
    with pytest.raises(ValueError, match=message):
        mobilenets.load_model(model_dir)
    assert main(["info", str(model_dir)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err and str(model_dir / "config.json") in err


def test_size_limits_pass_every_registered_model_at_the_largest_width():
    from mobilenets.models.factory import check_sizes
    from mobilenets.registry import get_entry, list_models

    for name in list_models():
        with torch.device("meta"):
            model = create_model(name)
        check_sizes(model.config["options"])
        check_sizes(get_entry(name).fixed)
    with torch.device("meta"):  # 15360 channels: the widest of the families at MAX_WIDTH_MULT
        mobilenets.shufflenet_v1(groups=8, scale=10.0)
