"""SSDLite trains through the shared engine on Fashion-MNIST canvases: the report, the best model, exact resume."""

from __future__ import annotations

import json

import pytest
import torch

import mobilenets
from mobilenets.cli import main
from mobilenets.data.classification import FASHION_MNIST_DIR
from mobilenets.training import TrainConfig, train
from mobilenets.training.checkpoint import CHECKPOINT

pytestmark = pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="needs Debian's dataset-fashion-mnist")
pytest.importorskip("pycocotools")


def _config(out, **overrides):
    base = dict(model="ssdlite_mobilenet_v3_small_100", data="fmnist-det", output=str(out), epochs=1, batch_size=8,
                train_limit=32, val_limit=8, resolution=96, progress=False, tensorboard=False, deterministic=True,
                threads=1, workers=0, checkpoint_every=2)  # fmt: skip
    base.update(overrides)
    return TrainConfig(**base)


def test_detector_trains_reports_and_resumes_exactly(tmp_path):
    summary = train(_config(tmp_path / "whole", epochs=2))
    assert summary["task"] == "detection" and 0.0 <= summary["map"] <= 1.0
    assert set(summary["per_class_ap"]) == set(mobilenets.data.classification.FASHION_MNIST_LABELS)
    run = json.loads((tmp_path / "whole" / "run.json").read_text())
    assert run["task"] == "detection" and run["recipe"]["name"] == "detection"
    assert run["data"]["name"].startswith("fmnist-det-128")
    header = (tmp_path / "whole" / "metrics.csv").read_text().splitlines()[0]
    assert "train_classification" in header and "val_map50" in header
    for picture in ("curves.png", "predictions.png"):
        assert (tmp_path / "whole" / picture).stat().st_size > 1000
    best = mobilenets.load_model(tmp_path / "whole" / "best")
    assert best.task == "detection" and best.labels[0] == "background" and best.preprocessing.input_size == (96, 96)

    stopped = train(_config(tmp_path / "split", epochs=2, max_steps=5))
    assert stopped["stopped_early"]
    train(_config(tmp_path / "split", epochs=2), resume=True)
    a = torch.load(tmp_path / "whole" / CHECKPOINT, weights_only=True)["model"]
    b = torch.load(tmp_path / "split" / CHECKPOINT, weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_detection_runs_refuse_what_does_not_fit(tmp_path, capsys):
    classifier = mobilenets.create_model("mobilenet_v2_035", num_classes=10)
    mobilenets.save_model(classifier, tmp_path / "v2")
    argv = ["train", "-m", "ssdlite_mobilenet_v3_small_100", "--data", "fmnist-det", "-o", str(tmp_path / "r"),
            "--train-limit", "16", "--val-limit", "4", "--init-backbone", str(tmp_path / "v2")]  # fmt: skip
    assert main(argv) == 2
    assert "does not fit the backbone" in capsys.readouterr().err
    assert main(argv[:-2] + ["--init", str(tmp_path / "v2")]) == 2
    assert "--init-backbone" in capsys.readouterr().err
    assert not (tmp_path / "r" / CHECKPOINT).exists()


def test_init_backbone_copies_a_classifiers_weights(tmp_path):
    from mobilenets.tasks.dense import backbone_of, init_backbone

    classifier = mobilenets.create_model("mobilenet_v3_small_100", num_classes=10, in_chans=1, stem_stride=1)
    mobilenets.save_model(classifier, tmp_path / "cls")
    detector = mobilenets.create_model("ssdlite_mobilenet_v3_small_100", num_classes=11, in_chans=1)
    mean, std = init_backbone(detector, str(tmp_path / "cls"))
    ours, theirs = backbone_of(detector).state_dict(), classifier.state_dict()
    assert torch.equal(ours["stem.conv.weight"], theirs["stem.conv.weight"])
    assert torch.equal(ours["stages.3.0.expand.conv.weight"], theirs["stages.3.0.expand.conv.weight"])
    # the reduced tail (C4 -> C5 halved) has other shapes: left as initialised
    assert ours["final_conv.conv.weight"].shape != theirs["final_conv.conv.weight"].shape
    saved = mobilenets.load_model(tmp_path / "cls").preprocessing
    assert (mean, std) == (tuple(saved.mean), tuple(saved.std))


def test_detector_exports_with_named_outputs_checked_against_pytorch(tmp_path):
    onnx = pytest.importorskip("onnx")
    from mobilenets.deploy import export

    model = mobilenets.create_model("ssdlite_mobilenet_v3_small_100", num_classes=11).eval()
    report = export(model, tmp_path / "det.onnx", "onnx", resolution=128)
    assert report.max_rel_error <= 1e-4
    graph = onnx.load(str(tmp_path / "det.onnx")).graph
    assert [o.name for o in graph.output] == ["boxes", "scores"]
    assert [d.dim_value for d in graph.output[1].type.tensor_type.shape.dim] == [
        1,
        model(torch.zeros(1, 3, 128, 128))[1].shape[1],
        11,
    ]
