"""Shipped weights: create_model(pretrained=...), NAME.TAG as a model directory, list --pretrained."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import mobilenets
from mobilenets.cli import main
from mobilenets.data.classification import FASHION_MNIST_DIR
from mobilenets.errors import UsageError
from mobilenets.pretrained import available, resolve

NAME, TAG = "mobilenet_v1_025", "fashion-mnist"


@pytest.mark.parametrize("shipped", sorted(available()))
def test_shipped_weights_load_with_their_own_architecture_and_labels(shipped):
    name, tag = shipped.split(".")
    model = mobilenets.create_model(name, pretrained=tag)
    assert model.name == name and model.in_chans == 1 and model.num_classes == 10
    assert model.labels[0] == "T-shirt/top" and model.options["stem_stride"] == 1
    assert model.metadata["final_epoch"] is True and model.metadata["top1"] >= 92.0
    same = mobilenets.load_pretrained(name, tag)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), same.state_dict().values(), strict=True))
    assert not model.training
    # the trained weights differ from a fresh model's
    fresh = mobilenets.create_model(name, num_classes=10, in_chans=1, stem_stride=1)
    assert not torch.equal(fresh.state_dict()["classifier.weight"], model.state_dict()["classifier.weight"])


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="needs Debian's dataset-fashion-mnist")
@pytest.mark.parametrize("shipped", sorted(available()))
def test_every_shipped_model_reproduces_its_recorded_top1_on_the_full_test_split(shipped, capsys):
    meta = available()[shipped]
    assert meta["trained_on"] == "fashion-mnist" and meta["final_epoch"] is True  # no epoch picked on the test set
    assert main(["eval", shipped, "--data", "fashion-mnist", "--json", "-q"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 10_000 and result["split"] == "test" and not result["tta"]
    assert result["top1"] == pytest.approx(meta["top1"], abs=0.02)  # the README's figures table quotes it


def test_pretrained_refuses_options_that_would_change_the_architecture():
    with pytest.raises(UsageError, match="drop num_classes"):
        mobilenets.create_model(NAME, pretrained=TAG, num_classes=5)
    with pytest.raises(UsageError, match="width_mult"):
        mobilenets.create_model(NAME, pretrained=TAG, width_mult=0.5)
    with pytest.raises(ValueError, match="shipped: mobilenet_v1_025.fashion-mnist"):
        mobilenets.create_model("mobilenet_v2_100", pretrained=TAG)


def test_name_dot_tag_is_a_model_directory_and_a_real_path_wins(tmp_path, monkeypatch):
    assert f"{NAME}.{TAG}" in available()
    assert (resolve(f"{NAME}.{TAG}") / "model.safetensors").is_file()
    monkeypatch.chdir(tmp_path)
    (tmp_path / f"{NAME}.{TAG}").mkdir()  # a user's own directory of that name is theirs
    assert resolve(f"{NAME}.{TAG}") == tmp_path.joinpath(f"{NAME}.{TAG}").relative_to(tmp_path)
    assert resolve("nothing.here").name == "nothing.here"


def test_list_pretrained_and_predict_out_of_the_box(tmp_path, capsys):
    assert main(["list", "--pretrained", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    rows = {row["name"]: row for row in listed}
    assert list(rows) == list(available()) and rows[f"{NAME}.{TAG}"]["recipe"] == "main"
    # a trouser: two dark-background vertical bars, as Fashion-MNIST draws them (white on black)
    pixels = np.zeros((28, 28), np.uint8)
    pixels[2:27, 8:13] = pixels[2:27, 15:20] = 200
    pixels[2:8, 8:20] = 200
    Image.fromarray(pixels).save(tmp_path / "trouser.png")
    assert main(["predict", f"{NAME}.{TAG}", str(tmp_path / "trouser.png"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    top = (out[0] if isinstance(out, list) else out)["top"][0]
    assert top["label"] == "Trouser"


def test_list_pretrained_with_no_match_is_a_one_line_error(capsys):
    assert main(["list", "--pretrained", "resnet*"]) == 2
    assert "no shipped weights match" in capsys.readouterr().err


def test_model_option_reaches_the_builder_and_the_run_record(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "-m", "mobilenet_v3_small_100", "--model-option", "reduced_tail=true", "--train-limit", "128",
            "--val-limit", "32", "--max-steps", "1", "--no-progress", "--no-tensorboard", "--workers", "0", "-o",
            str(out)]  # fmt: skip
    assert main(argv) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["model_options"] == {"reduced_tail": True}
    capsys.readouterr()
    bad = ["train", "-m", "mobilenet_v3_small_100", "--model-option", "reduced_tail", "-o", str(tmp_path / "x")]
    assert main(bad) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
