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


def test_detector_trains_reports_and_resumes_exactly(tmp_path, capsys):
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

    assert main(["eval", str(tmp_path / "whole"), "--json"]) == 0  # the run's own data, from run.json
    evaluated = json.loads(capsys.readouterr().out)
    # an untrained model scores at the noise floor, where thread counts move ties: compare loosely
    assert evaluated["map"] == pytest.approx(summary["map"], abs=2e-3) and evaluated["images"] == 8

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
    from mobilenets.tasks.dense import init_backbone

    classifier = mobilenets.create_model("mobilenet_v3_small_100", num_classes=10, in_chans=1, stem_stride=1)
    mobilenets.save_model(classifier, tmp_path / "cls")
    torch.manual_seed(1)
    fresh = mobilenets.create_model("ssdlite_mobilenet_v3_small_100", num_classes=11, in_chans=1)
    torch.manual_seed(1)
    detector = mobilenets.create_model("ssdlite_mobilenet_v3_small_100", num_classes=11, in_chans=1)
    mean, std = init_backbone(detector, str(tmp_path / "cls"))
    ours, theirs = detector.backbone_network.state_dict(), classifier.state_dict()
    assert torch.equal(ours["stem.conv.weight"], theirs["stem.conv.weight"])
    assert torch.equal(ours["stages.3.0.expand.conv.weight"], theirs["stages.3.0.expand.conv.weight"])
    # the reduced tail (C5 halved) is narrower: it starts from the classifier's largest-L2 filters
    # (test_segmentation_training checks which), not from its own initialisation
    assert ours["final_conv.conv.weight"].shape != theirs["final_conv.conv.weight"].shape
    fresh_final = fresh.backbone_network.state_dict()["final_conv.conv.weight"]
    assert not torch.equal(ours["final_conv.conv.weight"], fresh_final)
    saved = mobilenets.load_model(tmp_path / "cls").preprocessing
    assert (mean, std) == (tuple(saved.mean), tuple(saved.std))


def test_detector_exports_raw_outputs_with_no_nms(tmp_path):
    onnx = pytest.importorskip("onnx")
    from mobilenets.deploy import export

    model = mobilenets.create_model("ssdlite_mobilenet_v3_small_100", num_classes=11).eval()
    report = export(model, tmp_path / "det.onnx", "onnx", resolution=128, nms=False)
    assert report.max_rel_error <= 1e-4
    graph = onnx.load(str(tmp_path / "det.onnx")).graph
    assert [o.name for o in graph.output] == ["boxes", "scores"]
    assert "NonMaxSuppression" not in {n.op_type for n in graph.node}
    assert [d.dim_value for d in graph.output[1].type.tensor_type.shape.dim] == [
        1,
        model(torch.zeros(1, 3, 128, 128))[1].shape[1],
        11,
    ]


def _spread_scores(model):
    # At its initialisation the backbone's output hardly depends on the image, so every box of a class
    # gets the same score and which of them NMS keeps is arbitrary. He-initialised convs give distinct
    # scores, so that every box and its rank can be compared.
    torch.manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight)
    return model


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_detector_exports_end_to_end_with_nms_in_the_graph(tmp_path, fmt):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip(fmt if fmt == "openvino" else "onnxruntime")
    from mobilenets.deploy import export
    from mobilenets.deploy.runtimes import ort_runner, ov_runner

    model = _spread_scores(mobilenets.create_model("ssdlite320_mobilenet_v3_large", num_classes=11).eval())
    path = tmp_path / ("det.onnx" if fmt == "onnx" else "ov/det.xml")
    report = export(model, path, fmt, resolution=128, batch=2)
    assert report.max_rel_error <= 1e-4
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(3))
    run = ort_runner(path, all_outputs=True) if fmt == "onnx" else ov_runner(path, all_outputs=True)
    boxes, scores, labels, counts = run(x.numpy())
    assert boxes.shape == (2, 300, 4) and scores.shape == labels.shape == (2, 300) and counts.shape == (2,)
    if fmt == "onnx":
        graph = onnx.load(str(path)).graph
        assert [o.name for o in graph.output] == ["boxes", "scores", "labels", "num_detections"]
        assert "NonMaxSuppression" in {n.op_type for n in graph.node}
    with torch.no_grad():
        refs = [t.numpy() for t in model.with_postprocess()(x)]
    assert (counts == refs[3]).all() and (counts > 0).all()
    # order of near-equal scores aside, the same boxes, labels and scores (He-initialised weights give
    # large activations: the unfolded eager model differs from the BN-folded graph by ~1e-4)
    assert model.with_postprocess().output_error([boxes, scores, labels, counts], refs) < 1e-3
    for i, n in enumerate(counts.tolist()):
        assert not scores[i, n:].any() and not labels[i, n:].any() and not boxes[i, n:].any()


def test_end_to_end_detector_pads_what_postprocess_returns_and_its_check_catches_a_moved_box():
    model = _spread_scores(mobilenets.create_model("ssdlite320_mobilenet_v3_large", num_classes=5).eval())
    end_to_end = model.with_postprocess(max_detections=20)
    x = torch.randn(3, 3, 96, 96)
    with torch.no_grad():
        out = end_to_end(x)
    assert out.boxes.shape == (3, 20, 4) and out.labels.dtype == torch.int64
    for i, ref in enumerate(model.detect(x)):
        n = int(out.num_detections[i])
        assert n == min(20, len(ref["scores"]))
        assert torch.equal(out.boxes[i, :n], ref["boxes"][:n]) and torch.equal(out.labels[i, :n], ref["labels"][:n])
        assert torch.equal(out.scores[i, :n], ref["scores"][:n])
    refs = [t.numpy() for t in out]
    assert end_to_end.output_error(refs, refs) == 0.0
    moved = [r.copy() for r in refs]
    moved[0][0, 0] += 5.0
    assert end_to_end.output_error(moved, refs) > 1e-2
    fewer = [r.copy() for r in refs]
    fewer[3][1] -= 1
    assert end_to_end.output_error(fewer, refs) == float("inf")
    with pytest.raises(ValueError, match="max_detections"):
        model.with_postprocess(max_detections=0)
