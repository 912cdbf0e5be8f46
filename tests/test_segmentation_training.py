"""LR-ASPP trains through the shared engine on Fashion-MNIST canvases: mIoU per epoch, the report, eval, resume."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

import mobilenets
from mobilenets.cli import main
from mobilenets.data.classification import FASHION_MNIST_DIR
from mobilenets.training import TrainConfig, train
from mobilenets.training.checkpoint import CHECKPOINT

pytestmark = pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="needs Debian's dataset-fashion-mnist")


def _config(out, **overrides):
    base = dict(model="lraspp_mobilenet_v3_small_100", data="fmnist-seg", output=str(out), epochs=2, batch_size=8,
                train_limit=24, val_limit=8, resolution=64, progress=False, tensorboard=False, deterministic=True,
                threads=1, workers=0, checkpoint_every=2)  # fmt: skip
    base.update(overrides)
    return TrainConfig(**base)


def test_segmenter_trains_reports_evaluates_and_resumes_exactly(tmp_path, capsys):
    summary = train(_config(tmp_path / "whole"))
    assert summary["task"] == "segmentation" and 0.0 <= summary["miou"] <= 1.0
    assert list(summary["iou"]) == ["background", *mobilenets.data.classification.FASHION_MNIST_LABELS]
    run = json.loads((tmp_path / "whole" / "run.json").read_text())
    assert run["recipe"]["name"] == "segmentation" and run["data"]["name"].startswith("fmnist-seg-128")
    header = (tmp_path / "whole" / "metrics.csv").read_text().splitlines()[0]
    assert "train_pixel_acc" in header and "val_miou" in header
    for picture in ("curves.png", "predictions.png"):
        assert (tmp_path / "whole" / picture).stat().st_size > 1000
    assert main(["eval", str(tmp_path / "whole"), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["miou"] == pytest.approx(summary["miou"], abs=1e-3) and evaluated["images"] == 8

    train(_config(tmp_path / "split", max_steps=4))
    train(_config(tmp_path / "split"), resume=True)
    a = torch.load(tmp_path / "whole" / CHECKPOINT, weights_only=True)["model"]
    b = torch.load(tmp_path / "split" / CHECKPOINT, weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_started_from_a_classifier_run_resumes_with_its_normalization(tmp_path):
    from mobilenets.preprocessing import Preprocessing

    classifier = mobilenets.create_model("mobilenet_v3_small_100", num_classes=10, reduced_tail=True)
    mean, std = (0.3, 0.3, 0.3), (0.4, 0.4, 0.4)
    # a classification run's layout: --init-backbone RUN_DIR takes RUN_DIR/best, on resume too
    mobilenets.save_model(classifier, tmp_path / "cls" / "best", preprocessing=Preprocessing(mean=mean, std=std))
    config = _config(tmp_path / "seg", epochs=1, train_limit=16, init_backbone=str(tmp_path / "cls"))
    assert train(replace(config, max_steps=1))["stopped_early"]
    train(config, resume=True)
    saved = mobilenets.load_model(tmp_path / "seg" / "best").preprocessing
    assert (tuple(saved.mean), tuple(saved.std)) == (mean, std)


def test_a_classifier_name_is_not_a_segmentation_run(tmp_path, capsys):
    argv = ["train", "-m", "mobilenet_v3_small_100", "--data", "fmnist-seg", "-o", str(tmp_path / "r")]
    assert main(argv) == 2  # a classifier reads classification data: fmnist-seg is not one
    assert "fmnist-seg" in capsys.readouterr().err


def test_init_backbone_narrows_a_wider_block_to_its_largest_filters(tmp_path):
    from mobilenets.tasks.dense import init_backbone

    torch.manual_seed(0)
    # torchvision's reduced tail keeps the first RF2 block's expansion (288); the paper's (DeepLab's) halves it
    classifier = mobilenets.create_model("mobilenet_v3_small_100", num_classes=10, reduced_tail=True)
    mobilenets.save_model(classifier, tmp_path / "cls")
    seg = mobilenets.create_model("lraspp_mobilenet_v3_small_100", num_classes=11)
    init_backbone(seg, str(tmp_path / "cls"))
    ours, theirs = seg.backbone_network.state_dict(), classifier.state_dict()
    narrowed = [k for k, v in ours.items() if theirs[k].shape != v.shape]
    assert narrowed and all(k.startswith("stages.4.0.") for k in narrowed)
    for key in set(ours) - set(narrowed):
        assert torch.equal(ours[key], theirs[key]), key
    block = "stages.4.0."
    w = theirs[block + "expand.conv.weight"]
    keep = w.flatten(1).norm(dim=1).topk(144).indices.sort().values
    assert torch.equal(ours[block + "expand.conv.weight"], w[keep])
    assert torch.equal(ours[block + "dw.conv.weight"], theirs[block + "dw.conv.weight"][keep])
    assert torch.equal(ours[block + "project.conv.weight"], theirs[block + "project.conv.weight"][:, keep])
    fc1 = theirs[block + "se.fc1.weight"]
    squeeze = fc1.flatten(1).norm(dim=1).topk(40).indices.sort().values
    assert torch.equal(ours[block + "se.fc1.weight"], fc1[squeeze][:, keep])
    assert torch.equal(ours[block + "se.fc2.weight"], theirs[block + "se.fc2.weight"][keep][:, squeeze])


@pytest.mark.parametrize("task", ["segmentation", "detection"])
def test_the_training_seed_keeps_the_canvases_and_the_data_name_draws_them(tmp_path, task):
    # A seed study compares runs on one validation set: --seed changes initialisation, order and
    # augmentation, never the canvases; those are named by the data (fmnist-seg-seed2).
    from mobilenets.tasks.detection.task import DetectionTask
    from mobilenets.tasks.segmentation import SegmentationTask

    short, Task = ("seg", SegmentationTask) if task == "segmentation" else ("det", DetectionTask)

    def first_val_image(data, seed):
        loaded = Task().load(_config(tmp_path, data=data, seed=seed), in_chans=3)
        return loaded.name, loaded.val[0][0]

    name0, image0 = first_val_image(f"fmnist-{short}", 0)
    name2, image2 = first_val_image(f"fmnist-{short}", 2)
    assert name0 == name2 and torch.equal(image0, image2)
    other, image = first_val_image(f"fmnist-{short}-seed2", 0)
    assert other.endswith("seed2") and not torch.equal(image0, image)
