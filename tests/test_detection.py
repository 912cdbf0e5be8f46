"""SSDLite: counts against the papers, parity with torchvision's SSD pieces (used here only as oracles), I/O, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch.nn import functional as F
from torchvision.models.detection import _utils as tv_utils
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import box_iou

from mobilenets import create_model, list_models, load_model, profile, save_model
from mobilenets.cli import main
from mobilenets.complexity import figure_met
from mobilenets.io import build_from_config
from mobilenets.models import ssdlite
from mobilenets.models.ssdlite import TABLE5_HEAD, check_detector
from mobilenets.ops.anchors import AnchorConfig, default_boxes
from mobilenets.ops.coder import decode, encode
from mobilenets.ops.matcher import match
from mobilenets.ops.postprocess import PostprocessConfig, postprocess
from mobilenets.tasks.detection.loss import LossConfig, detector_loss, ssd_loss

DETECTORS = list_models(task="detection")
SIZE = 320


@pytest.fixture(scope="module")
def tv_model():
    torch.manual_seed(0)
    model = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):  # N(0, 0.03) fades to constant scores by the heads; keep the scale
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        if isinstance(m, torch.nn.BatchNorm2d):  # statistics away from (0, 1) so a wrong eps or a skipped BN shows
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def converted(tv_model, tmp_path_factory):
    """The torchvision model's state dict, saved with torch.save and converted with the CLI."""
    tmp = tmp_path_factory.mktemp("ssdlite")
    src = tmp / "ssdlite320_mobilenet_v3_large-random.pth"
    torch.save(tv_model.state_dict(), src)
    out = tmp / "converted"
    args = ["convert", str(src), "--from", "torchvision", "--model", "ssdlite320_mobilenet_v3_large", "-o", str(out)]
    assert main(args) == 0
    return load_model(out)


def _anchors(name: str, num_classes: int | None = None, size: int = SIZE) -> torch.Tensor:
    model = create_model(name, **({} if num_classes is None else {"num_classes": num_classes})).eval()
    with torch.no_grad():
        return model.head_outputs(torch.zeros(1, 3, size, size)).anchors


def _random_targets(n: int, size: int = SIZE, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    targets = []
    for i in range(n):
        k = 1 + i * 3
        xy = torch.rand(k, 2, generator=g) * size * 0.7
        wh = torch.rand(k, 2, generator=g) * size * 0.3 + 4
        boxes = torch.cat([xy, (xy + wh).clamp(max=size)], 1)
        targets.append({"boxes": boxes, "labels": torch.randint(1, 91, (k,), generator=g)})
    return targets


# --- 1. counts -----------------------------------------------------------------------------------


def test_registered_detectors():
    assert DETECTORS == [
        "ssdlite320_mobilenet_v3_large", "ssdlite_mobilenet_v1_100", "ssdlite_mobilenet_v2_100",
        "ssdlite_mobilenet_v3_large_100", "ssdlite_mobilenet_v3_small_100",
    ]  # fmt: skip
    assert not set(DETECTORS) & set(list_models(task="classification"))
    model = create_model("ssdlite_mobilenet_v3_large_100")
    assert model.task == "detection" and model.num_classes == 91 and model.options["reduced_tail"] is True


def test_torchvision_param_count_exact(tv_model):
    ours = create_model("ssdlite320_mobilenet_v3_large")
    theirs = sum(p.numel() for p in tv_model.parameters())
    assert sum(p.numel() for p in ours.parameters()) == theirs == 3_440_060
    assert profile(ours, SIZE).params == 3_440_060


@pytest.mark.parametrize(
    ("name", "num_classes", "params", "madds"),
    [
        ("ssdlite_mobilenet_v1_100", 81, "5.1M", "1.3B"),  # P-V2 Table 6 (80 classes + background)
        ("ssdlite_mobilenet_v2_100", 81, "4.3M", "0.8B"),  # P-V2 Table 6
        ("ssdlite_mobilenet_v3_large_100", 91, "3.22M", "0.51B"),  # P-V3 Table 6, V3+ (90 classes + background)
        ("ssdlite_mobilenet_v3_small_100", 91, "1.77M", "0.16B"),  # P-V3 Table 6, V3-Small+
        ("ssdlite320_mobilenet_v3_large", 91, "3,440,060", "0.583B"),  # torchvision's weight metadata
    ],
)
def test_counts_match_the_papers(name, num_classes, params, madds):
    """Within 1% or rounding to the printed digits ("0.8B" holds our 0.789B, "0.16B" our 0.162B)."""
    prof = profile(create_model(name, num_classes=num_classes), SIZE)
    assert figure_met(prof.params, params, 0.01 if "," not in params else 0.0), prof.params
    assert figure_met(prof.madds, madds, 0.01), prof.madds


def test_table5_head_is_flops():
    """P-V2 Table 5's SSDLite head: 2.1M params as printed; its 0.35B is FLOPs (erratum)."""
    pub = TABLE5_HEAD
    prof = profile(create_model("ssdlite_mobilenet_v2_100", num_classes=pub.num_classes), pub.resolution)
    head = [layer for layer in prof.layers if layer.name.startswith(("extras", "box_head", "class_head"))]
    params, madds = sum(la.params + la.bn_params for la in head), sum(la.madds for la in head)
    assert figure_met(params, pub.params, 0.01)
    assert not figure_met(madds, pub.madds, pub.tolerance)  # the printed figure is really off
    assert figure_met(madds, pub.corrected_madds, pub.tolerance)
    assert figure_met(2 * madds, pub.madds, pub.tolerance)


def test_info_counts_a_detector(capsys):
    import json

    assert main(["info", "ssdlite320_mobilenet_v3_large", "-r", "320", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params"] == 3_440_060 and sum(la["madds"] for la in info["layers"]) == info["madds"]


# --- 2. parity with torchvision -----------------------------------------------------------------------


@pytest.mark.parametrize("size", [(320, 320), (256, 192)])
def test_anchors_equal_default_box_generator(size):
    model = create_model("ssdlite320_mobilenet_v3_large").eval()
    images = torch.zeros(2, 3, *size)
    with torch.no_grad():
        ours = model.head_outputs(images).anchors
    features = model.backbone(images)
    x = features[-1]
    for extra in model.extras:
        x = extra(x)
        features.append(x)
    generator = DefaultBoxGenerator([[2, 3] for _ in range(6)], min_ratio=0.2, max_ratio=0.95)
    theirs = generator(ImageList(images, [size] * 2), features)
    assert torch.equal(ours, theirs[0])
    assert model.num_anchors == generator.num_anchors_per_location()


def test_tf_anchors_have_three_boxes_in_the_lowest_layer():
    config = AnchorConfig(style="tf")
    assert config.num_anchors(6) == [3, 6, 6, 6, 6, 6]
    shapes = config.box_shapes(6)
    r2 = math.sqrt(2)
    close = torch.testing.assert_close
    close(torch.tensor(shapes[0]), torch.tensor([(0.1, 0.1), (0.2 * r2, 0.2 / r2), (0.2 / r2, 0.2 * r2)]))
    s1, s2 = 0.2 + 0.75 / 5, 0.2 + 1.5 / 5
    close(torch.tensor(shapes[1][0]), torch.tensor((s1, s1)))
    close(torch.tensor(shapes[1][-1]), torch.tensor((math.sqrt(s1 * s2),) * 2))
    close(torch.tensor(shapes[5][-1]), torch.tensor((math.sqrt(0.95),) * 2))  # the last level interpolates with 1.0
    boxes = default_boxes(config, [(2, 2)], (100, 200))  # one level: scales 0.2 and 0.95
    assert boxes.shape == (12, 4)
    assert boxes[0].tolist() == pytest.approx([50 - 10, 25 - 5, 50 + 10, 25 + 5])  # center (0.25, 0.25)


def test_box_coder_equals_torchvision():
    g = torch.Generator().manual_seed(1)
    anchors = torch.rand(500, 2, generator=g) * 300
    anchors = torch.cat([anchors, anchors + torch.rand(500, 2, generator=g) * 100 + 1], 1)
    boxes = torch.rand(500, 2, generator=g) * 300
    boxes = torch.cat([boxes, boxes + torch.rand(500, 2, generator=g) * 100 + 1], 1)
    coder = tv_utils.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    torch.testing.assert_close(encode(boxes, anchors), coder.encode_single(boxes, anchors), rtol=1e-6, atol=1e-6)
    codes = torch.randn(3, 500, 4, generator=g) * 3
    codes[0, 0, 2] = 100.0  # beyond the exp clamp
    ours = decode(codes, anchors)
    for i in range(3):
        torch.testing.assert_close(ours[i], coder.decode_single(codes[i], anchors), rtol=1e-6, atol=1e-5)


def test_matcher_equals_ssd_matcher():
    anchors = _anchors("ssdlite320_mobilenet_v3_large")
    for target in _random_targets(4, seed=3) + [{"boxes": torch.tensor([[0.0, 0.0, 3.0, 3.0]])}]:  # IoU < 0.5
        boxes = target["boxes"]
        theirs = tv_utils.SSDMatcher(0.5)(box_iou(boxes, anchors))
        ours = match(boxes, anchors, 0.5)
        assert torch.equal(ours, theirs)
        assert set(ours[ours >= 0].tolist()) == set(range(len(boxes)))  # every box has an anchor
    assert (match(torch.zeros(0, 4), anchors) == -1).all()


def test_softmax_loss_equals_compute_loss(tv_model):
    g = torch.Generator().manual_seed(4)
    anchors = _anchors("ssdlite320_mobilenet_v3_large")
    targets = _random_targets(3, seed=5)
    codes = torch.randn(3, anchors.shape[0], 4, generator=g)
    logits = torch.randn(3, anchors.shape[0], 91, generator=g) * 2
    matched = [tv_utils.SSDMatcher(0.5)(box_iou(t["boxes"], anchors)) for t in targets]
    theirs = tv_model.compute_loss(targets, {"bbox_regression": codes, "cls_logits": logits}, [anchors] * 3, matched)
    ours = ssd_loss(codes, logits, anchors, targets, LossConfig(kind="softmax"))
    assert set(ours) == set(theirs)
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-5, atol=0)


def test_model_loss_equals_torchvision_training_forward(tv_model, converted):
    torch.manual_seed(6)
    x = torch.rand(2, 3, SIZE, SIZE)
    targets = _random_targets(2, seed=7)
    tv_model.train()
    try:
        theirs = tv_model(list(x), [dict(t) for t in targets])
    finally:
        tv_model.eval()
    converted.train()
    ours = detector_loss(converted, (x - 0.5) / 0.5, targets)
    converted.eval()
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-5, atol=0)


def test_postprocess_equals_torchvision(tv_model):
    g = torch.Generator().manual_seed(8)
    anchors = _anchors("ssdlite320_mobilenet_v3_large")
    codes = torch.randn(2, anchors.shape[0], 4, generator=g)
    logits = torch.randn(2, anchors.shape[0], 91, generator=g) * 4  # many scores above 0.001, several classes
    kept = tv_model.detections_per_img
    tv_model.detections_per_img = 30_000  # all that NMS keeps, so that every per-class top-k candidate counts
    try:
        theirs = tv_model.postprocess_detections({"bbox_regression": codes, "cls_logits": logits}, [anchors] * 2,
                                                 [(SIZE, SIZE)] * 2)  # fmt: skip
    finally:
        tv_model.detections_per_img = kept
    boxes = torchvision.ops.clip_boxes_to_image(decode(codes, anchors), (SIZE, SIZE))
    ours = postprocess(boxes, logits.softmax(-1), PostprocessConfig(detections_per_img=30_000))
    for a, b in zip(ours, theirs, strict=True):
        assert len(b["labels"].unique()) > 5
        for key in ("boxes", "scores", "labels"):
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_converted_torchvision_model_gives_the_same_detections(tv_model, converted):
    assert converted.name == "ssdlite320_mobilenet_v3_large" and converted.labels[1] == "person"
    torch.manual_seed(9)
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        theirs = tv_model(list(x))
        ours = converted.detect((x - 0.5) / 0.5)  # torchvision normalizes with mean = std = 0.5 inside
    for a, b in zip(ours, theirs, strict=True):
        assert len(b["boxes"]) == 300 and len(b["labels"].unique()) > 10 and b["scores"].unique().numel() > 100
        for key in ("boxes", "scores", "labels"):
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-4)


# --- the other presets' losses -------------------------------------------------------------------


def test_focal_loss_is_tf_weighted_sigmoid_focal():
    """TF's focal loss written out: background as all zeros, alpha 0.75 on positives, box loss / code size."""
    g = torch.Generator().manual_seed(10)
    model = create_model("ssdlite_mobilenet_v3_small_100", num_classes=5)
    assert model.num_logits == 4 and model.recipe.loss.kind == "focal"
    assert all(bool((p.pw.bias == -4.6).all()) for p in model.class_head)
    anchors = _anchors("ssdlite_mobilenet_v3_small_100", 5)
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 120.0, 150.0]]), "labels": torch.tensor([3])}]
    codes = torch.randn(1, anchors.shape[0], 4, generator=g)
    logits = torch.randn(1, anchors.shape[0], 4, generator=g)
    ours = ssd_loss(codes, logits, anchors, targets, LossConfig(kind="focal"))
    matched = match(targets[0]["boxes"], anchors)
    pos = matched >= 0
    z = torch.zeros(anchors.shape[0], 4)
    z[pos, 2] = 1.0  # label 3 -> column 2 of the foreground logits
    p = torch.sigmoid(logits[0])
    pt = torch.where(z == 1, p, 1 - p)
    weight = torch.where(z == 1, 0.75, 0.25)
    bce = -(z * torch.log(p) + (1 - z) * torch.log(1 - p))
    cls = (weight * (1 - pt) ** 2 * bce).sum() / pos.sum()
    box = F.smooth_l1_loss(codes[0][pos], encode(targets[0]["boxes"][matched[pos]], anchors[pos]), reduction="sum")
    torch.testing.assert_close(ours["classification"], cls, rtol=1e-5, atol=0)
    torch.testing.assert_close(ours["bbox_regression"], box / 4 / pos.sum(), rtol=1e-5, atol=0)


def test_sigmoid_hard_example_mining_keeps_three_negatives_per_positive():
    g = torch.Generator().manual_seed(11)
    model = create_model("ssdlite_mobilenet_v2_100", num_classes=4)
    assert model.recipe.loss.kind == "sigmoid" and model.num_logits == 4
    anchors = _anchors("ssdlite_mobilenet_v2_100", 4)
    targets = [{"boxes": torch.tensor([[100.0, 100.0, 164.0, 164.0]]), "labels": torch.tensor([2])}]
    codes = torch.zeros(1, anchors.shape[0], 4)  # predicted boxes = anchors: distinct enough for NMS at 0.99
    logits = torch.randn(1, anchors.shape[0], 4, generator=g)
    ours = ssd_loss(codes, logits, anchors, targets, LossConfig(kind="sigmoid"))
    matched = match(targets[0]["boxes"], anchors)
    pos = matched >= 0
    labels = torch.zeros(anchors.shape[0], dtype=torch.int64)
    labels[pos] = 2
    per_anchor = F.binary_cross_entropy_with_logits(logits[0], F.one_hot(labels, 4).float(), reduction="none").sum(1)
    negatives = per_anchor[~pos].sort(descending=True).values[: 3 * int(pos.sum())]
    expected = (per_anchor[pos].sum() + negatives.sum()) / pos.sum()
    torch.testing.assert_close(ours["classification"], expected, rtol=1e-5, atol=0)


# --- model API: forward, detect, I/O, export ---------------------------------------------------------


@pytest.mark.parametrize("name", ["ssdlite_mobilenet_v1_100", "ssdlite_mobilenet_v3_small_100"])
def test_forward_shapes_and_detect(name):
    model = create_model(name, num_classes=7, width_mult=0.5).eval()
    x = torch.randn(2, 3, 256, 192)
    with torch.no_grad():
        out = model(x)
    anchors = sum(a * h * w for a, (h, w) in zip(model.num_anchors, [(16, 12), (8, 6), (4, 3), (2, 2), (1, 1),
                                                                     (1, 1)], strict=True))  # fmt: skip
    assert out.boxes.shape == (2, anchors, 4) and out.scores.shape == (2, anchors, 7)
    assert out.boxes[..., 0::2].max() <= 192 and out.boxes[..., 1::2].max() <= 256 and out.boxes.min() >= 0
    detections = model.detect(x)
    assert len(detections) == 2 and set(detections[0]) == {"boxes", "scores", "labels"}
    assert detections[0]["labels"].min() >= 1 and len(detections[0]["boxes"]) <= 100


def test_training_step_reduces_the_loss():
    torch.manual_seed(12)
    model = create_model("ssdlite_mobilenet_v3_small_100", num_classes=3, width_mult=0.5)
    x = torch.randn(2, 3, 96, 96)
    targets = [{"boxes": torch.tensor([[8.0, 8.0, 60.0, 70.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[30.0, 40.0, 90.0, 80.0], [0.0, 0.0, 20.0, 20.0]]),
                "labels": torch.tensor([2, 1])}]  # fmt: skip
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(6):
        loss = sum(detector_loss(model, x, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_save_load_round_trip(tmp_path):
    model = create_model("ssdlite_mobilenet_v2_100", num_classes=5, width_mult=0.35, preset="torchvision").eval()
    save_model(model, tmp_path / "det")
    loaded = load_model(tmp_path / "det")
    assert loaded.config == model.config and loaded.task == "detection"
    assert type(build_from_config(model.config)) is type(model)
    x = torch.randn(1, 3, 160, 160)
    with torch.no_grad():
        for a, b in zip(loaded(x), model(x), strict=True):
            torch.testing.assert_close(a, b)
    assert loaded.preprocessing.mean == (0.5, 0.5, 0.5) and loaded.preprocessing.input_size == (320, 320)


def test_export_and_fx_trace():
    model = create_model("ssdlite_mobilenet_v3_small_100", num_classes=10).eval()
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        expected = model(x)
    program = torch.export.export(model, (x,))
    for a, b in zip(program.module()(x), expected, strict=True):
        torch.testing.assert_close(a, b)
    traced = torch.fx.symbolic_trace(model)
    for a, b in zip(traced(x), expected, strict=True):
        torch.testing.assert_close(a, b)


# --- 3. bad input -----------------------------------------------------------------------------------


def test_a_classifier_where_a_detector_is_needed():
    with pytest.raises(ValueError, match="mobilenet_v3_large_100 is a classification model, not a detector"):
        check_detector("mobilenet_v3_large_100")
    with pytest.raises(ValueError, match="not a detector; use one of ssdlite320"):
        check_detector(create_model("mobilenet_v1_025"))
    check_detector("ssdlite_mobilenet_v2_100")
    with pytest.raises(ValueError, match="backbone must be one of mobilenet_v1, .*got 'shufflenet_v1_g3_100'"):
        ssdlite(backbone="shufflenet_v1_g3_100")
    with pytest.raises(ValueError, match="backbone must be one of mobilenet_v1, .*got 'ssdlite_mobilenet_v2_100'"):
        ssdlite(backbone="ssdlite_mobilenet_v2_100")
    with pytest.raises(ValueError, match="is a detection model; features_only takes a backbone's name"):
        create_model("ssdlite_mobilenet_v2_100", features_only=True)


@pytest.mark.parametrize(("name", "family"), [("mobilenet_v2_050", dict(backbone="mobilenet_v2", width_mult=0.5)),
                                               ("mobilenet_v3_small_075", dict(backbone="mobilenet_v3_small",
                                                                               width_mult=0.75))])  # fmt: skip
def test_registered_backbone_names(name, family):
    """A head takes a registered classifier's name; the family string at its width builds the same detector."""
    torch.manual_seed(0)
    ours = ssdlite(backbone=name, num_classes=5)
    torch.manual_seed(0)
    theirs = ssdlite(**family, num_classes=5)
    assert ours.options["backbone"] == name and "width_mult" not in ours.options
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("num_classes", [1, 0, -3, 2.5, True])
def test_wrong_num_classes(num_classes):
    with pytest.raises(ValueError, match="num_classes counts the background and must be an integer >= 2"):
        create_model("ssdlite_mobilenet_v3_small_100", num_classes=num_classes)


def test_bad_options():
    with pytest.raises(ValueError, match="preset must be one of tf, torchvision"):
        ssdlite(preset="paper")
    with pytest.raises(ValueError, match="reduced_tail halves MobileNetV3"):
        ssdlite(backbone="mobilenet_v2", reduced_tail=True)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"boxes": torch.tensor([[10.0, 10.0, 10.0, 50.0]]), "labels": torch.tensor([1])}, "has zero area"),
        ({"boxes": torch.tensor([[10.0, 50.0, 40.0, 20.0]]), "labels": torch.tensor([1])}, "has zero area"),
        ({"boxes": torch.tensor([[10.0, 10.0, 140.0, 50.0]]), "labels": torch.tensor([1])}, "outside the 128x128"),
        ({"boxes": torch.tensor([[-5.0, 10.0, 40.0, 50.0]]), "labels": torch.tensor([1])}, "outside the 128x128"),
        ({"boxes": torch.tensor([[1.0, 1.0, 9.0, 9.0]]), "labels": torch.tensor([0])}, r"labels'\] must be in 1..4"),
        ({"boxes": torch.tensor([[1.0, 1.0, 9.0, 9.0]]), "labels": torch.tensor([5])}, r"must be in 1..4"),
        ({"boxes": torch.tensor([1.0, 1.0, 9.0, 9.0]), "labels": torch.tensor([1])}, r"float tensor \(n, 4\)"),
        ({"boxes": torch.tensor([[1.0, 1.0, 9.0, 9.0]]), "labels": torch.tensor([1, 2])}, "must be an int64 tensor"),
        ({"boxes": torch.tensor([[1.0, 1.0, 9.0, 9.0]])}, "must be a dict with 'boxes'"),
    ],
)
def test_bad_targets(target, message):
    model = create_model("ssdlite_mobilenet_v3_small_100", num_classes=5, width_mult=0.35)
    with pytest.raises(ValueError, match=message):
        detector_loss(model, torch.randn(1, 3, 128, 128), [target])


def test_targets_must_match_the_batch():
    model = create_model("ssdlite_mobilenet_v3_small_100", num_classes=5, width_mult=0.35)
    with pytest.raises(ValueError, match=r"one dict per image \(2\), got 1"):
        detector_loss(
            model, torch.randn(2, 3, 128, 128), [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0).long()}]
        )


def test_convert_a_classifier_checkpoint_as_a_detector(tmp_path, capsys):
    src = tmp_path / "mobilenet_v3_large.pth"
    torch.save(torchvision.models.mobilenet_v3_large().state_dict(), src)
    out = tmp_path / "out"
    args = ["convert", str(src), "--from", "torchvision", "--model", "ssdlite320_mobilenet_v3_large", "-o", str(out)]
    assert main(args) == 2
    assert "is not a torchvision ssdlite320_mobilenet_v3_large state dict" in capsys.readouterr().err
    assert not out.exists()
