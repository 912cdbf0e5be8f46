"""Converters: each source's own model with random weights (BN statistics included), saved in its own
file format, converted with our CLI, must give the same logits at 224 and at another resolution."""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pytest
import torch
from torch import nn

from mobilenets import load_model
from mobilenets.cli import main
from mobilenets.layers import ChannelShuffle

ATOL = 1e-5


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: on a shared 2-core machine, spinning thread pools made these tests 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN affine parameters and running statistics, so identity BN cannot pass."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            elif isinstance(m, nn.Conv2d | nn.Linear) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    return model.eval()


def _scale_logits(model: nn.Module, classifier: nn.Linear, size: int = 224) -> None:
    """Rescale the classifier so logits have std ~2: a 1e-5 bound is then a 5e-6 relative one."""
    with torch.no_grad():
        std = model(torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))).std()
        classifier.weight.mul_(2 / std)
        if classifier.bias is not None:
            classifier.bias.mul_(2 / std)


def _convert(tmp_path, src, source, model, *extra) -> nn.Module:
    out = tmp_path / f"{source}-{model}"
    assert main(["convert", str(src), "--from", source, "--model", model, "-o", str(out), *extra]) == 0
    return load_model(out)


def _assert_same_logits(reference, ours, size, nchw_reference=True, to_reference=None):
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(size))
    with torch.no_grad():
        theirs = reference(to_reference(x) if to_reference else x)
        mine = ours(x)
    assert mine.shape == theirs.shape
    assert theirs.std() > 0.5  # logits that carry signal, not a constant
    assert (mine - theirs).abs().max().item() <= ATOL


# --- torchvision --------------------------------------------------------------------------

TORCHVISION = ["mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"]


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision(tmp_path, name):
    torchvision = pytest.importorskip("torchvision")
    reference = _randomize(getattr(torchvision.models, name)())
    _scale_logits(reference, reference.classifier[-1])
    torch.save(reference.state_dict(), tmp_path / f"{name}.pth")
    ours = _convert(tmp_path, tmp_path / f"{name}.pth", "torchvision", name)
    for size in (224, 193):
        _assert_same_logits(reference, ours, size)
    assert ours.preprocessing.mean == (0.485, 0.456, 0.406) and ours.labels[0] == "tench"


# --- timm ---------------------------------------------------------------------------------

TIMM_FAST = ["mobilenetv1_100h", "mobilenetv2_100", "mobilenetv3_large_100", "tf_mobilenetv3_small_100"]
TIMM_SLOW = [
    "mobilenetv1_100", "mobilenetv1_125", "mobilenetv2_035", "mobilenetv2_050", "mobilenetv2_075", "mobilenetv2_140",
    "mobilenetv3_large_075", "mobilenetv3_small_075", "mobilenetv3_small_100", "tf_mobilenetv3_large_075",
    "tf_mobilenetv3_large_100", "tf_mobilenetv3_large_minimal_100", "tf_mobilenetv3_small_075",
    "tf_mobilenetv3_small_minimal_100",
]  # fmt: skip


def _check_timm(tmp_path, name, fmt="pth"):
    timm = pytest.importorskip("timm")
    reference = _randomize(timm.create_model(name))
    _scale_logits(reference, reference.classifier)
    src = tmp_path / f"{name}.{fmt}"
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(src))
    else:
        torch.save(reference.state_dict(), src)
    ours = _convert(tmp_path, src, "timm", name)
    for size in (224, 193):  # odd sizes give the tf_ ports asymmetric 'SAME' padding at every stride
        _assert_same_logits(reference, ours, size)
    return ours


@pytest.mark.parametrize("name", TIMM_FAST)
def test_timm(tmp_path, name):
    ours = _check_timm(tmp_path, name, "safetensors" if name.startswith("tf_") else "pth")
    tf_port = name.startswith("tf_")
    assert ours.config["options"]["padding"] == ("same" if tf_port else "symmetric")
    assert ours.config["options"]["bn_eps"] == (1e-3 if tf_port else 1e-5)
    if name == "mobilenetv1_100h":  # MobileNetV1 with timm's 1024 conv head (a core option, head_chs)
        assert ours.config["options"]["head_chs"] == 1024 and ours.feature_info[-1].module == "final_conv"


@pytest.mark.slow
@pytest.mark.parametrize("name", TIMM_SLOW)
def test_timm_all_variants(tmp_path, name):
    _check_timm(tmp_path, name)


# --- Keras (Keras 3, torch backend) -----------------------------------------------------------------


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras' numpy 2 copy= warnings


def _keras():
    if os.environ.get("KERAS_BACKEND", "torch") != "torch":
        pytest.skip("Keras tests need KERAS_BACKEND=torch")
    os.environ["KERAS_BACKEND"] = "torch"
    return pytest.importorskip("keras")


KERAS_APPS = {  # our name -> (application, keyword arguments)
    "mobilenet_v1_100": ("MobileNet", {}),
    "mobilenet_v1_025": ("MobileNet", {"alpha": 0.25}),
    "mobilenet_v2_100": ("MobileNetV2", {}),
    "mobilenet_v2_035": ("MobileNetV2", {"alpha": 0.35}),
    "mobilenet_v2_130": ("MobileNetV2", {"alpha": 1.3}),
    "mobilenet_v3_large_100": ("MobileNetV3Large", {}),
    "mobilenet_v3_large_075": ("MobileNetV3Large", {"alpha": 0.75}),
    "mobilenet_v3_large_minimal_100": ("MobileNetV3Large", {"minimalistic": True}),
    "mobilenet_v3_small_100": ("MobileNetV3Small", {}),
    "mobilenet_v3_small_075": ("MobileNetV3Small", {"alpha": 0.75}),
    "mobilenet_v3_small_minimal_100": ("MobileNetV3Small", {"minimalistic": True}),
}
KERAS_FAST = ["mobilenet_v1_100", "mobilenet_v2_035", "mobilenet_v3_small_100"]


def _keras_model(keras, app, kwargs, size, classes=1000):
    return getattr(keras.applications, app)(
        weights=None, input_shape=(size, size, 3), classes=classes, classifier_activation=None, **kwargs
    )


def _randomize_keras(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = (w.shape for w in weights)
            weights = [rng.uniform(0.5, 1.5, gamma), rng.normal(0, 0.1, beta), rng.normal(0, 0.1, mean),
                       rng.uniform(0.5, 1.5, var)]  # fmt: skip
        else:  # keep Keras' initial kernels (well scaled), randomize biases
            weights = [weights[0]] + [rng.normal(0, 0.1, w.shape) for w in weights[1:]]
        layer.set_weights([w.astype("float32") for w in weights])


def _keras_logits(model, app):
    """Run a Keras model on our NCHW input; V3 has a built-in Rescaling from 0-255 to [-1, 1]."""

    def run(x):
        nhwc = x.permute(0, 2, 3, 1).numpy()
        if app.startswith("MobileNetV3"):
            nhwc = (nhwc * 0.5 + 0.5) * 255.0  # ours takes (x - 0.5) / 0.5 of pixels in [0, 1]
        import keras

        return torch.as_tensor(keras.ops.convert_to_numpy(model(nhwc, training=False)))

    return run


def _check_keras(tmp_path, name, fmt, classes=1000):
    keras = _keras()
    app, kwargs = KERAS_APPS[name]
    model = _keras_model(keras, app, kwargs, 224, classes)
    _randomize_keras(model)
    # Scale the classifier so logits have std ~2 (see _scale_logits).
    head = (
        model.layers[-1] if app == "MobileNetV2" else model.get_layer("conv_preds" if app == "MobileNet" else "logits")
    )
    std = float(np.std(np.asarray(_keras_logits(model, app)(torch.randn(2, 3, 224, 224)))))
    head.set_weights([w * (2 / std) for w in head.get_weights()])
    src = tmp_path / f"{name}.{fmt}"
    if fmt == "weights.h5":
        model.save_weights(str(src))
    else:  # the legacy layout of keras.applications' downloadable weight files
        import h5py
        from keras.src.legacy.saving import legacy_h5_format

        with h5py.File(src, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, model)
    ours = _convert(tmp_path, src, "keras", name)
    # Keras V1 pads strided convs (0, 1) whatever the size, which is TF 'SAME' only for even sizes.
    other = 160 if app == "MobileNet" else 193
    other_model = _keras_model(keras, app, kwargs, other, classes)
    other_model.set_weights(model.get_weights())
    drop = (lambda t: t[:, 1:]) if classes == 1001 else (lambda t: t)
    for size, reference in ((224, model), (other, other_model)):
        run = _keras_logits(reference, app)
        _assert_same_logits(lambda x, run=run: drop(run(x)), ours, size)
    assert ours.config["options"]["padding"] == "same" and ours.config["options"]["bn_eps"] == 1e-3
    return ours


@pytest.mark.parametrize("name", KERAS_FAST)
def test_keras(tmp_path, name):
    ours = _check_keras(tmp_path, name, "weights.h5" if name != "mobilenet_v2_035" else "h5")
    assert ours.preprocessing.mean == (0.5, 0.5, 0.5)


def test_keras_1001_class_head_drops_background(tmp_path):
    ours = _check_keras(tmp_path, "mobilenet_v1_025", "h5", classes=1001)
    assert ours.num_classes == 1000 and ours.metadata["converted_from"]["dropped_background_class"]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["h5", "weights.h5"])
@pytest.mark.parametrize("name", sorted(KERAS_APPS))
def test_keras_all_variants(tmp_path, name, fmt):
    _check_keras(tmp_path, name, fmt)


# --- megvii ShuffleNet-Series ShuffleNetV1 -------------------------------------------------------------


class _MegviiUnit(nn.Module):
    """megvii's unit as its checkpoints lay it out: pw (grouped) + BN + ReLU, dw + BN, shuffle, pw + BN."""

    def __init__(self, inp, oup, groups, first_group, stride):
        super().__init__()
        mid = oup // 4
        self.groups, self.stride = groups, stride
        self.branch_main_1 = nn.Sequential(
            nn.Conv2d(inp, mid, 1, groups=1 if first_group else groups, bias=False), nn.BatchNorm2d(mid),
            nn.ReLU(), nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid),
        )  # fmt: skip
        outputs = oup - inp if stride == 2 else oup
        self.branch_main_2 = nn.Sequential(nn.Conv2d(mid, outputs, 1, groups=groups, bias=False),
                                           nn.BatchNorm2d(outputs))  # fmt: skip
        self.branch_proj = nn.AvgPool2d(3, 2, 1)

    def forward(self, x):
        y = self.branch_main_1(x)
        if self.groups > 1:  # megvii: (b, c/g, g) -> transpose: the inverse of the paper's permutation
            b, c, h, w = y.shape
            y = y.reshape(b, c // self.groups, self.groups, h, w).permute(0, 2, 1, 3, 4).reshape(b, c, h, w)
        y = self.branch_main_2(y)
        if self.stride == 1:
            return torch.relu(y + x)
        return torch.cat((self.branch_proj(x), torch.relu(y)), 1)


class _MegviiShuffleNetV1(nn.Module):
    """megvii's network layout (first_conv, features, AvgPool2d(7), bias-free classifier)."""

    WIDTHS = {(3, 0.5): [12, 120, 240, 480], (3, 1.0): [24, 240, 480, 960], (8, 0.5): [16, 192, 384, 768],
              (8, 1.0): [24, 384, 768, 1536]}  # fmt: skip

    def __init__(self, groups, scale):
        super().__init__()
        widths = self.WIDTHS[groups, scale]
        self.first_conv = nn.Sequential(nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                        nn.ReLU())  # fmt: skip
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        units, inp = [], widths[0]
        for stage, (repeat, oup) in enumerate(zip((4, 8, 4), widths[1:], strict=True)):
            for i in range(repeat):
                units.append(_MegviiUnit(inp, oup, groups, stage == 0 and i == 0, 2 if i == 0 else 1))
                inp = oup
        self.features = nn.Sequential(*units)
        self.globalpool = nn.AvgPool2d(7)
        self.classifier = nn.Sequential(nn.Linear(inp, 1000, bias=False))

    def forward(self, x):
        x = self.globalpool(self.features(self.maxpool(self.first_conv(x))))
        return self.classifier(x.flatten(1))


def _megvii_checkpoint(tmp_path, groups, scale):
    reference = _randomize(_MegviiShuffleNetV1(groups, scale))
    with torch.no_grad():
        for m in reference.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in")
    _scale_logits(reference, reference.classifier[0])
    # released files: {"state_dict": {"module.<key>": ...}} saved from nn.DataParallel
    src = tmp_path / f"megvii_g{groups}_{scale}.pth.tar"
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, src)
    return reference, src


@pytest.mark.parametrize(("groups", "scale", "name"), [(3, 1.0, "shufflenet_v1_g3_100"),
                                                        (8, 0.5, "shufflenet_v1_g8_050")])  # fmt: skip
def test_megvii(tmp_path, groups, scale, name):
    reference, src = _megvii_checkpoint(tmp_path, groups, scale)
    ours = _convert(tmp_path, src, "megvii", name)
    for size in (224, 200):  # megvii pools with AvgPool2d(7): only inputs with a 7x7 last map are valid
        _assert_same_logits(reference, ours, size)
    prep = ours.preprocessing
    assert (prep.channel_order, prep.value_range, prep.mean, prep.std) == ("BGR", 255.0, (0, 0, 0), (1, 1, 1))
    assert ours.config["options"]["shuffle_order"] == "megvii"


def test_megvii_shuffle_is_the_inverse_of_the_papers():
    x = torch.arange(12.0).view(1, 12, 1, 1)
    paper, megvii = ChannelShuffle(3)(x).flatten(), ChannelShuffle(3, "megvii")(x).flatten()
    assert megvii.tolist() == [0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11]  # out[i*n + j] = in[j*g + i]
    assert paper.tolist() == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]
    assert ChannelShuffle(3, "megvii")(ChannelShuffle(3)(x)).flatten().tolist() == list(range(12))


# --- predict ---------------------------------------------------------------------------------------


def test_predict_applies_the_configs_preprocessing(tmp_path, capsys):
    """A megvii model wants BGR 0-255: predict's probabilities must match megvii's network on that input."""
    from PIL import Image

    reference, src = _megvii_checkpoint(tmp_path, 3, 0.5)
    out = tmp_path / "model"
    assert main(["convert", str(src), "--from", "megvii", "--model", "shufflenet_v1_g3_050", "-o", str(out)]) == 0
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)  # 256x256: the resize to 256 is a no-op
    Image.fromarray(pixels).save(tmp_path / "a.png")
    capsys.readouterr()
    assert main(["predict", str(out), str(tmp_path / "a.png"), "--topk", "3", "--json"]) == 0
    result = [json.loads(line) for line in capsys.readouterr().out.splitlines()]  # one line per image
    bgr = torch.as_tensor(pixels[16:240, 16:240, ::-1].copy()).permute(2, 0, 1).float()[None]
    with torch.no_grad():
        probs = reference(bgr).softmax(-1)[0]
    top = result[0]["top"]
    assert [t["index"] for t in top] == probs.topk(3).indices.tolist()
    assert [t["label"] for t in top] == [load_model(out).labels[i] for i in probs.topk(3).indices.tolist()]
    np.testing.assert_allclose([t["probability"] for t in top], probs.topk(3).values.tolist(), atol=1e-5)
    assert main(["predict", str(out), str(tmp_path / "a.png"), "--topk", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("a.png") and len(lines) == 3


def test_predict_errors(tmp_path, capsys):
    reference, src = _megvii_checkpoint(tmp_path, 3, 0.5)
    out = tmp_path / "model"
    main(["convert", str(src), "--from", "megvii", "--model", "shufflenet_v1_g3_050", "-o", str(out)])
    (tmp_path / "bad.png").write_text("not an image")
    assert main(["predict", str(out), str(tmp_path / "bad.png")]) == 2
    assert "cannot read image" in capsys.readouterr().err
    assert main(["predict", str(out), str(tmp_path / "missing.png")]) == 2
    assert "does not exist" in capsys.readouterr().err


# --- bad checkpoints: clear errors, nothing written ----------------------------------------------------


class _Payload:
    """Unpickling this would create a file: torch.load(weights_only=True) must refuse it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _fails(tmp_path, capsys, argv, *patterns):
    out = tmp_path / "out"
    assert main(["convert", *map(str, argv), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mobilenets convert: error: ") and err.count("\n") == 1
    for pattern in patterns:
        assert pattern in err, err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    return err


def test_pickle_payload_is_refused_not_executed(tmp_path, capsys):
    torchvision = pytest.importorskip("torchvision")
    marker = tmp_path / "pwned"
    state = torchvision.models.mobilenet_v3_small().state_dict()
    torch.save({"state_dict": state, "extra": _Payload(marker)}, tmp_path / "evil.pth")
    err = _fails(
        tmp_path, capsys, [tmp_path / "evil.pth", "--from", "torchvision", "--model", "mobilenet_v3_small"], "refusing"
    )
    assert "False" not in err and "safe_globals" not in err and "\x1b" not in err  # never torch's advice
    assert "it refers to getattr, which is not a tensor" in err  # what the payload calls
    assert not marker.exists()


@pytest.fixture
def small_v3(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), tmp_path / "small.pth")
    return tmp_path / "small.pth"


def test_wrong_variant_names_the_first_mismatched_key(tmp_path, capsys, small_v3):
    timm = pytest.importorskip("timm")
    torch.save(timm.create_model("mobilenetv2_100").state_dict(), tmp_path / "v2.pth")
    _fails(tmp_path, capsys, [tmp_path / "v2.pth", "--from", "timm", "--model", "mobilenetv2_140"],
           "'conv_stem.weight' has shape (32, 3, 3, 3)", "'stem.conv.weight' needs (48, 3, 3, 3)")  # fmt: skip
    # another family: Small's block 1 has an SE where Large's has its projection
    _fails(tmp_path, capsys, [small_v3, "--from", "torchvision", "--model", "mobilenet_v3_large"],
           "has no 'features.1.block.1.0.weight'", "shape (16, 16, 1, 1)")  # fmt: skip


def test_wrong_class_count_names_both_shapes(tmp_path, capsys, small_v3):
    argv = [small_v3, "--from", "torchvision", "--model", "mobilenet_v3_small", "--num-classes", "10"]
    _fails(
        tmp_path, capsys, argv, "'classifier.3.weight' has shape (1000, 1024)", "'classifier.weight' needs (10, 1024)"
    )


def test_truncated_and_foreign_files(tmp_path, capsys, small_v3):
    (tmp_path / "cut.pth").write_bytes(small_v3.read_bytes()[:4000])
    _fails(tmp_path, capsys, [tmp_path / "cut.pth", "--from", "torchvision", "--model", "mobilenet_v3_small"],
           "not a readable PyTorch checkpoint")  # fmt: skip
    (tmp_path / "notes.txt").write_text("hello")
    _fails(tmp_path, capsys, [tmp_path / "notes.txt", "--from", "timm", "--model", "mobilenetv2_100"],
           "not a readable PyTorch checkpoint")  # fmt: skip
    _fails(tmp_path, capsys, [tmp_path / "notes.txt", "--from", "keras", "--model", "MobileNetV2"],
           "not a readable HDF5 file")  # fmt: skip
    _fails(tmp_path, capsys, [small_v3, "--from", "timm", "--model", "mobilenetv2_110d"], "cannot be converted")
    _fails(tmp_path, capsys, [small_v3, "--from", "timm", "--model", "resnet50"], "valid: mobilenetv1_100")
    _fails(tmp_path, capsys, [small_v3, "--from", "timm", "--model", "mobilenetv3_small_100"], "has 0 timm blocks")


def test_python_api(tmp_path):
    from mobilenets.convert import convert, convert_checkpoint, resolve, source_models

    reference, src = _megvii_checkpoint(tmp_path, 3, 0.5)
    model = convert_checkpoint(src, "megvii", "shufflenet_v1_g3_050", labels=[f"c{i}" for i in range(1000)])
    assert not model.training and model.labels[7] == "c7"
    out = convert(src, tmp_path / "m", "megvii", "shufflenet_v1_g3_050", labels="none")
    loaded = load_model(out)
    assert loaded.labels is None and loaded.metadata["converted_from"]["source"] == "megvii"
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert "mobilenet_v3_large" in source_models("torchvision") and "MobileNetV2" in source_models("keras")
    assert resolve("timm", "tf_mobilenetv3_large_100.in1k").options["padding"] == "same"
    with pytest.raises(ValueError, match="unknown source"):
        resolve("caffe", "x")
    with pytest.raises(ValueError, match="1000 labels|3 labels"):
        convert_checkpoint(src, "megvii", "shufflenet_v1_g3_050", labels=["a", "b", "c"])


def test_imagenet_and_coco_labels_come_from_torchvision_public_weights_metadata(monkeypatch):
    import sys

    torchvision = pytest.importorskip("torchvision")
    from mobilenets.convert import _labels, torchvision_categories

    monkeypatch.setitem(sys.modules, "torchvision.models._meta", None)  # private: importing it must not be needed
    imagenet = _labels("imagenet", 1000)
    assert imagenet == torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]
    assert imagenet[0] == "tench" and _labels("auto", 1000) == imagenet
    coco = torchvision_categories("SSDLite320_MobileNet_V3_Large_Weights.COCO_V1")
    assert len(coco) == 91 and coco[:2] == ["__background__", "person"]
