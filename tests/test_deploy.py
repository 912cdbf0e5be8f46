"""Deployment: optimize() exactness, checked export, INT8 quantization on real-format data, bench, clear errors."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import mobilenets
from mobilenets import Preprocessing, create_model, load_model, save_model
from mobilenets.cli import main
from mobilenets.deploy import fold_batchnorm, optimize
from mobilenets.deploy.peak import cpu_features, parse_cpuinfo

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

SMALL = Preprocessing((32, 32), 0, channel_order="L", mean=(0.5,), std=(0.5,))
FAMILIES = ["mobilenet_v1_025", "mobilenet_v2_035", "mobilenet_v3_small_075", "mobilenet_v3_large_075",
            "shufflenet_v1_g3_050", "shufflenet_v1_g8_025_noshuffle"]  # fmt: skip


def _randomize_bn(model):
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
    return model.eval()


def _small_model_dir(tmp_path, name="mobilenet_v3_small_075", labels=None):
    model = _randomize_bn(create_model(name, num_classes=10, in_chans=1))
    save_model(model, tmp_path / "model", preprocessing=SMALL, labels=labels)
    return tmp_path / "model"


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("channels_last", [True, False])
def test_optimize_is_exact_and_leaves_the_original_alone(name, channels_last):
    model = _randomize_bn(create_model(name, num_classes=7))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = optimize(model, channels_last=channels_last)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    x = torch.randn(2, 3, 72, 96)
    with torch.no_grad():
        ref, out = model(x), fast(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert fast.config == model.config and not fast.training


@pytest.mark.parametrize("name", ["lraspp_mobilenet_v3_small_100", "ssdlite_mobilenet_v3_small_100"])
def test_optimize_keeps_dilation_and_heads_exact(name):
    # The paper's LR-ASPP runs its last stage atrous: a rewritten conv that dropped the dilation
    # would change every shape there.
    model = _randomize_bn(create_model(name, num_classes=5))
    fast = optimize(model)
    x = torch.randn(1, 3, 128, 160)
    with torch.no_grad():
        ref, out = model(x), fast(x)
    for r, o in zip(ref if isinstance(ref, tuple) else (ref,), out if isinstance(out, tuple) else (out,), strict=True):
        torch.testing.assert_close(o, r, rtol=1e-4, atol=1e-4 * r.abs().max().item())


def test_optimize_channels_last_replaces_pointwise_convs():
    fast = optimize(create_model("mobilenet_v2_100"))
    kinds = {type(m).__name__ for m in fast.modules()}
    assert "FusedConvAct" in kinds and "ConvNormAct" not in kinds
    assert optimize(create_model("mobilenet_v3_small_100")).stages[0][0].se.__class__.__name__ == "LinearSqueezeExcite"


def test_optimize_rejects_bad_input():
    with pytest.raises(TypeError, match="nn.Module"):
        optimize("mobilenet_v2_100")
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(create_model("mobilenet_v1_025").train())


def test_export_onnx_round_trip(tmp_path):
    import onnxruntime as ort

    from mobilenets.deploy.exporter import export

    model = _randomize_bn(create_model("mobilenet_v3_small_075", num_classes=10))
    report = export(model, tmp_path / "m.onnx", "onnx", resolution=64)
    assert report.max_rel_error <= 1e-4 and report.input_shape == (1, 3, 64, 64)
    proto = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(proto)
    ops = {n.op_type for n in proto.graph.node}
    assert "BatchNormalization" not in ops  # folded
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 64), dtype=np.float32)
    out = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"input": x})[0]
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4 * np.abs(ref).max())
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_export_openvino_and_cli(tmp_path):
    pytest.importorskip("openvino")
    model_dir = _small_model_dir(tmp_path)
    assert main(["export", str(model_dir), "--format", "openvino", "--json"]) == 0
    assert (model_dir / "openvino" / "model.xml").is_file() and (model_dir / "openvino" / "model.bin").is_file()
    assert main(["export", str(model_dir), "-o", str(tmp_path / "out.onnx")]) == 0
    assert onnx.load(str(tmp_path / "out.onnx")).graph.input[0].type.tensor_type.shape.dim[2].dim_value == 32


def test_export_errors_write_nothing(tmp_path, capsys):
    from mobilenets.deploy.exporter import export

    model_dir = _small_model_dir(tmp_path)
    before = sorted(p.name for p in model_dir.iterdir())
    assert main(["export", str(model_dir), "--format", "tflite"]) == 2
    assert "unsupported export format 'tflite'" in capsys.readouterr().err
    assert main(["export", str(model_dir), "--opset", "11"]) == 2
    assert "unsupported ONNX opset 11" in capsys.readouterr().err
    assert main(["export", str(tmp_path)]) == 2
    assert "not a model directory" in capsys.readouterr().err
    assert main(["export", str(model_dir), "-f", "openvino", "-o", str(tmp_path / "x.onnx")]) == 2
    assert "must end in .xml" in capsys.readouterr().err
    # A check that fails (impossible tolerance) leaves no file, and keeps an older good one intact.
    good = tmp_path / "good.onnx"
    good.write_bytes(b"old")
    with pytest.raises(ValueError, match="differs from PyTorch"):
        export(load_model(model_dir), good, "onnx", tolerance=-1.0, overwrite=True)
    assert good.read_bytes() == b"old"
    assert sorted(p.name for p in model_dir.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.onnx", "model"]


def _write_idx(root, split, images, labels):
    prefix = "train" if split == "train" else "t10k"
    head = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in images.shape)
    (root / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(head + images.tobytes()))
    head = bytes([0, 0, 8, 1]) + len(labels).to_bytes(4, "big")
    (root / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(head + labels.astype(np.uint8).tobytes()))


def _stripes(n, seed):
    """A tiny learnable 2-class problem: horizontal vs vertical stripes, 28x28 like Fashion-MNIST."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    images = np.zeros((n, 28, 28), np.uint8)
    for i, label in enumerate(labels):
        phase = rng.integers(0, 4)
        stripes = ((np.arange(28) + phase) // 2 % 2 * 200 + rng.integers(0, 40, 28)).astype(np.uint8)
        images[i] = stripes[None, :] if label else stripes[:, None]
    return images, labels


def test_load_idx_and_image_folders(tmp_path):
    from PIL import Image

    from mobilenets.data.calibration import load_labelled_images

    images, labels = _stripes(20, 0)
    _write_idx(tmp_path, "train", images, labels)
    data = load_labelled_images(tmp_path, SMALL, split="train", limit=5, offset=3)
    assert data.images.shape == (5, 1, 32, 32) and list(data.labels) == list(labels[3:8])
    folder = tmp_path / "folder"
    for name in ("cat", "dog"):
        (folder / name).mkdir(parents=True)
        Image.fromarray(images[0]).save(folder / name / "a.png")
    data = load_labelled_images(folder, SMALL, model_labels=["dog", "cat"])
    assert sorted(data.labels) == [0, 1]
    with pytest.raises(ValueError, match="'dog' is not one of the model's labels"):
        load_labelled_images(folder, SMALL, model_labels=["cat", "bird"])
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        load_labelled_images(tmp_path / "nope", SMALL)


def test_quantize_keeps_accuracy_of_a_trained_model(tmp_path, capsys):
    """Train a tiny V3 briefly on stripes, quantize with real calibration, evaluate in ONNX Runtime."""
    torch.manual_seed(0)
    images, labels = _stripes(600, 1)
    _write_idx(tmp_path, "train", images[:400], labels[:400])
    _write_idx(tmp_path, "test", images[400:], labels[400:])
    from mobilenets.data.calibration import load_labelled_images

    pre = Preprocessing((32, 32), 32, channel_order="L", mean=(0.5,), std=(0.5,))
    train = load_labelled_images(tmp_path, pre, split="train")
    x, y = torch.from_numpy(train.images), torch.from_numpy(train.labels)
    model = create_model("mobilenet_v3_small_075", num_classes=2, in_chans=1)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    model.train()
    for _ in range(3):
        for i in range(0, 400, 50):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[i : i + 50]), y[i : i + 50]).backward()
            opt.step()
    # So few steps leave BN running stats behind the weights: re-estimate them (cumulative average).
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        model(x)
    model.eval()
    save_model(model, tmp_path / "m", preprocessing=pre)
    code = main(["quantize", str(tmp_path / "m"), "--data", str(tmp_path), "--calibration", "32",
                 "--eval-images", "200", "--json"])  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["top1_fp32"] >= 90, report  # the model did learn
    assert report["top1_drop"] <= 1.0, report
    assert report["float_nodes"] == 7 * 9  # nine SE blocks, seven nodes each, kept float by --keep-float auto
    proto = onnx.load(report["output"])
    assert sum(n.op_type == "QuantizeLinear" for n in proto.graph.node) > 20
    assert report["latency_int8_ms"] > 0 and report["calibration_images"] == 32


def test_quantize_errors(tmp_path, capsys):
    model_dir = _small_model_dir(tmp_path)
    assert main(["quantize", str(model_dir), "--data", str(tmp_path / "none")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["quantize", str(model_dir), "--data", str(tmp_path / "empty")]) == 2
    assert "holds no images" in capsys.readouterr().err
    assert main(["quantize", str(model_dir), "--data", str(tmp_path), "--keep-float", "bogus"]) == 2
    assert "unknown keep-float policy" in capsys.readouterr().err
    assert not (model_dir / "model.int8.onnx").exists()


def test_se_detection_matches_the_architecture(tmp_path):
    from mobilenets.deploy.exporter import export_onnx
    from mobilenets.deploy.quantize import find_end_nodes, find_se_nodes

    for name, n_se in [("mobilenet_v3_large_075", 8), ("mobilenet_v2_035", 0)]:
        export_onnx(create_model(name, num_classes=5), tmp_path / f"{name}.onnx", resolution=32)
        proto = onnx.load(str(tmp_path / f"{name}.onnx"))
        se = find_se_nodes(proto)
        assert len(se) == 7 * n_se
        assert len(find_end_nodes(proto)) == (3 if n_se else 2)  # first conv, (pre-logits,) classifier


def test_bench_python_and_cli(tmp_path, capsys):
    from mobilenets.deploy.bench import bench_models

    model = create_model("mobilenet_v3_small_075").eval()
    results = bench_models({"v3s": model}, runtimes=["eager", "optimized", "onnxruntime"], threads=[1],
                           resolution=64, rounds=1, round_seconds=0.02)  # fmt: skip
    assert [r.runtime for r in results] == ["eager", "optimized", "onnxruntime"]
    for r in results:
        assert r.median_ms > 0 and r.p90_ms >= r.median_ms and r.samples >= 5
        assert r.madds == mobilenets.profile(model, 64).madds
        assert r.gflops == pytest.approx(2 * r.madds / (r.median_ms / 1e3) / 1e9)
        assert 0 < r.peak_share < 2
    model_dir = _small_model_dir(tmp_path)
    code = main(["bench", str(model_dir), "mobilenet_v1_025", "--runtimes", "eager,onnxruntime", "-r", "32",
                 "--rounds", "1", "--round-seconds", "0.02", "--json", "--plot", str(tmp_path / "p.png")])  # fmt: skip
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["model"], r["runtime"]) for r in rows} == {
        ("mobilenet_v3_small_075", "eager"), ("mobilenet_v3_small_075", "onnxruntime"),
        ("mobilenet_v1_025", "eager"), ("mobilenet_v1_025", "onnxruntime")}  # fmt: skip
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert all(r["extra"]["cpu"] == cpu_features().summary() for r in rows)


def test_cpu_features_from_cpuinfo():
    zen3 = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse avx avx2 fma\n\nprocessor\t: 1\n"
    features = parse_cpuinfo(zen3)
    assert features.model == "AMD EPYC 7B13" and features.flags == ("avx2",)
    assert not features.int8_dot and not features.bf16_dot
    assert "no VNNI" in features.summary() and "no native bf16" in features.summary()
    spr = "model name : Xeon\nflags : avx2 avx512f avx512_vnni avx512_bf16 amx_int8 amx_bf16\n"
    features = parse_cpuinfo(spr)
    assert features.int8_dot and features.bf16_dot
    assert features.summary() == "Xeon (avx2, avx512f, avx512_vnni, avx512_bf16, amx_int8, amx_bf16)"
    assert parse_cpuinfo("").model == "unknown CPU"


def test_bench_errors(capsys, monkeypatch):
    assert main(["bench", "mobilenet_v2_100", "--runtimes", "tflite"]) == 2
    assert "unknown runtime 'tflite'" in capsys.readouterr().err
    assert main(["bench", "mobilenet_v2_100", "--threads", "0"]) == 2
    assert "thread counts must be between 1" in capsys.readouterr().err
    assert main(["bench", "no_such_model"]) == 2
    assert "unknown model" in capsys.readouterr().err
    import mobilenets.deploy.bench as bench

    monkeypatch.setattr(bench, "available", lambda name: name != "openvino")
    assert main(["bench", "mobilenet_v2_100", "--runtimes", "openvino"]) == 2
    assert "needs openvino, which is not installed" in capsys.readouterr().err


@pytest.mark.slow  # five quantize + evaluate cycles
def test_accuracy_aware_fallback_keeps_early_convs_in_float(tmp_path):
    from mobilenets.deploy.quantize import quantize_model

    images, labels = _stripes(200, 2)
    _write_idx(tmp_path, "train", images[:150], labels[:150])
    _write_idx(tmp_path, "test", images[150:], labels[150:])
    model = load_model(_small_model_dir(tmp_path, "mobilenet_v1_025"))  # 27 convs
    # A negative budget can never be met: the fallback doubles up to half the convs, then stops.
    report = quantize_model(model, tmp_path / "q.onnx", tmp_path, calibration=8, eval_images=20, max_drop=-1.0,
                            validation=30)  # fmt: skip
    n_convs = sum(n.op_type == "Conv" for n in onnx.load(str(tmp_path / "q.onnx")).graph.node)
    assert report.extra["float_early_convs"] == 8 and report.float_nodes == 8 and n_convs == 27
    off = quantize_model(model, tmp_path / "q.onnx", tmp_path, calibration=8, eval_images=20, max_drop=None,
                         overwrite=True)  # fmt: skip
    assert off.extra["float_early_convs"] == 0 and off.float_nodes == 0


def test_bench_gives_each_model_its_own_export(tmp_path, capsys):
    """A seed and its NetAdapt result share an architecture name: each is exported to its own file."""
    from mobilenets.deploy.bench import bench_models

    seed = create_model("mobilenet_v1_025", num_classes=10, in_chans=1).eval()
    adapted = create_model("mobilenet_v1_025", num_classes=10, in_chans=1, width_mult=0.2).eval()
    work = tmp_path / "work"
    work.mkdir()
    results = bench_models({"seed": seed, "adapted": adapted}, runtimes=["onnxruntime"], resolution=32, rounds=1,
                           round_seconds=0.01, workdir=work)  # fmt: skip
    assert [r.model for r in results] == ["seed", "adapted"] and results[0].madds > results[1].madds
    assert not any(work.iterdir())  # nothing left behind
    save_model(seed, tmp_path / "a", preprocessing=SMALL)
    save_model(adapted, tmp_path / "b", preprocessing=SMALL)
    argv = ["bench", str(tmp_path / "a"), str(tmp_path / "b"), "--runtimes", "onnxruntime", "--rounds", "1",
            "--round-seconds", "0.01", "--json"]  # fmt: skip
    assert main(argv) == 0
    assert [r["model"] for r in json.loads(capsys.readouterr().out)] == ["mobilenet_v1_025", "mobilenet_v1_025#1"]


def test_export_and_bench_of_shipped_weights_leave_them_usable(tmp_path, monkeypatch, capsys):
    """`export NAME.TAG` writes ./NAME.TAG.onnx beside, never a ./NAME.TAG/ folder that would hide the weights."""
    from mobilenets.commands.deploy import default_int8_output

    shipped = "mobilenet_v1_025.fashion-mnist"
    monkeypatch.chdir(tmp_path)
    assert main(["export", shipped]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{shipped}.onnx"]
    assert onnx.load(f"{shipped}.onnx").graph.input[0].type.tensor_type.shape.dim[1].dim_value == 1
    assert main(["export", shipped]) == 2  # the file is not replaced unasked
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(["export", shipped, "--overwrite"]) == 0
    assert default_int8_output(shipped) == Path(f"{shipped}.int8.onnx")  # quantize's default: beside, too
    assert main(["bench", shipped, "--runtimes", "eager", "--rounds", "1", "--round-seconds", "0.01", "--json"]) == 0
    capsys.readouterr()
    assert main(["info", shipped]) == 0
    # A folder of that name left by an older export (model.onnx only) says why the weights are not found.
    (tmp_path / shipped).mkdir()
    (tmp_path / shipped / "model.onnx").write_bytes(b"old")
    capsys.readouterr()
    assert main(["predict", shipped, f"{shipped}.onnx"]) == 2
    assert f"hides the shipped weights {shipped}" in capsys.readouterr().err


def test_exports_describe_themselves_and_take_any_batch(tmp_path, capsys):
    """Labels, preprocessing and task travel in the ONNX metadata and the IR's rt_info; --dynamic-batch runs at 3."""
    import onnxruntime as ort

    from mobilenets.deploy.exporter import metadata_of

    labels = [f"class {i}" for i in range(10)]
    model_dir = _small_model_dir(tmp_path, labels=labels)
    assert main(["export", str(model_dir), "--dynamic-batch", "-o", str(tmp_path / "m.onnx"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dynamic_batch"] is True
    meta = metadata_of(tmp_path / "m.onnx")
    assert json.loads(meta["labels"]) == labels and meta["task"] == "classification"
    assert meta["model"] == "mobilenet_v3_small_075" and meta["channel_order"] == "L"
    assert json.loads(meta["mean"]) == [0.5] and json.loads(meta["std"]) == [0.5]
    assert json.loads(meta["input_size"]) == [32, 32] and json.loads(meta["preprocessing"]) == SMALL.to_dict()
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    assert session.get_modelmeta().custom_metadata_map == meta
    x = np.random.default_rng(0).standard_normal((3, 1, 32, 32), dtype=np.float32)
    out = session.run(None, {"input": x})[0]
    with torch.no_grad():
        ref = load_model(model_dir)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4 * np.abs(ref).max())
    # a static export keeps its batch, and still describes itself
    assert main(["export", str(model_dir), "-o", str(tmp_path / "s.onnx"), "-r", "48"]) == 0
    assert onnx.load(str(tmp_path / "s.onnx")).graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    assert json.loads(metadata_of(tmp_path / "s.onnx")["input_size"]) == [48, 48]
    # a graph that fixes its batch anyway (a detector's NMS) is refused, not written with a false promise
    from mobilenets.deploy.exporter import export

    detector = create_model("ssdlite_mobilenet_v3_small_100", num_classes=3).eval()
    with pytest.raises(ValueError, match="fixes the batch size"):
        export(detector, tmp_path / "d.onnx", resolution=64, dynamic_batch=True)
    assert not (tmp_path / "d.onnx").exists()
    pytest.importorskip("openvino")
    import openvino as ov

    assert main(["export", str(model_dir), "-f", "openvino", "--dynamic-batch", "-o", str(tmp_path / "m.xml")]) == 0
    assert metadata_of(tmp_path / "m.xml") == meta
    compiled = ov.Core().compile_model(str(tmp_path / "m.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    np.testing.assert_allclose(compiled(x)[0], ref, rtol=0, atol=1e-4 * np.abs(ref).max())
