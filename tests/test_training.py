"""Training, evaluation, resume, fault handling and DDP on tiny data (seconds each)."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import mobilenets
from mobilenets.cli import main
from mobilenets.data import classification as data_mod
from mobilenets.training import RECIPES, TrainConfig, TrainingDiverged, evaluate, get_recipe, load_data, train
from mobilenets.training.engine import CHECKPOINT, lr_factor, param_groups

SRC = str(Path(__file__).resolve().parents[1] / "src")
TINY = "mobilenet_v3_small_minimal_100"


def write_idx(path: Path, array: torch.Tensor, gz: bool = True) -> None:
    header = bytes([0, 0, 8, array.dim()]) + struct.pack(f">{array.dim()}I", *array.shape)
    raw = header + array.to(torch.uint8).numpy().tobytes()
    (path.with_name(path.name + ".gz").write_bytes(gzip.compress(raw)) if gz else path.write_bytes(raw))


def make_idx_dir(root: Path, n_train: int = 256, n_test: int = 100, classes: int = 4) -> Path:
    """A learnable toy: class k is noise plus a bright bar in horizontal band k (unchanged by flips)."""
    g = torch.Generator().manual_seed(0)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = torch.arange(n) % classes
        images = torch.randint(0, 60, (n, 28, 28), generator=g)
        for i, k in enumerate(labels.tolist()):
            images[i, 7 * k + 1 : 7 * k + 6, 6:22] = 230
        write_idx(root / f"{split}-images-idx3-ubyte", images, gz=split == "train")
        write_idx(root / f"{split}-labels-idx1-ubyte", labels, gz=split == "train")
    return root


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory) -> Path:
    return make_idx_dir(tmp_path_factory.mktemp("idx"))


def tiny_config(idx_dir: Path, out: Path, **overrides) -> TrainConfig:
    base = dict(
        model=TINY,
        output=str(out),
        data=str(idx_dir),
        epochs=2,
        batch_size=32,
        resolution=32,
        stem_stride=1,
        checkpoint_every=3,
        progress=False,
        tensorboard=False,
        deterministic=True,
        threads=1,
        workers=0,
    )
    base.update(overrides)
    return TrainConfig(**base)


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(Path(run_dir) / CHECKPOINT, map_location="cpu", weights_only=True)["model"]


# --- data ---------------------------------------------------------------------------------


def test_idx_directory_loads_both_splits(idx_dir):
    spec = load_data(idx_dir, resolution=32)
    assert (len(spec.train), len(spec.val)) == (256, 100)
    assert spec.train.images.shape == (256, 1, 28, 28) and spec.labels == ["0", "1", "2", "3"]
    assert spec.preprocessing.input_size == (32, 32) and spec.preprocessing.channel_order == "L"


def test_truncated_idx_is_a_clear_error(tmp_path, idx_dir):
    bad = make_idx_dir(tmp_path / "bad")
    path = bad / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated"):
        load_data(bad)


def test_missing_fashion_mnist_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(data_mod, "FASHION_MNIST_DIR", tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_data("fashion-mnist")


@pytest.mark.skipif(not data_mod.FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_is_verified_and_complete():
    spec = load_data("fashion-mnist")
    assert (len(spec.train), len(spec.val)) == (60000, 10000)
    assert spec.labels[0] == "T-shirt/top" and spec.train.targets.bincount().tolist() == [6000] * 10


def test_batch_augmentation_keeps_shape_and_range(idx_dir):
    spec = load_data(idx_dir, resolution=36)
    g = torch.Generator().manual_seed(0)
    x = data_mod.idx_batch(spec.train.images[:8], spec.preprocessing, {"crop_pad": 2, "hflip": True, "erase": 1.0}, g)
    plain = data_mod.idx_batch(spec.train.images[:8], spec.preprocessing, None, None)
    assert x.shape == plain.shape == (8, 1, 36, 36)
    assert not torch.equal(x, plain)


def test_crop_shift_counts_stored_pixels_at_any_resolution(idx_dir):
    """crop_pad 2 on 28x28 images shifts by up to 2 of their pixels: 4 pixels once resized to 56."""
    spec = load_data(idx_dir, resolution=56)
    image = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    image[..., 13:15, 13:15] = 255
    g = torch.Generator().manual_seed(0)
    plain = data_mod.idx_batch(image, spec.preprocessing, None, None)[0, 0]
    shifted = data_mod.idx_batch(image.expand(200, -1, -1, -1), spec.preprocessing, {"crop_pad": 2}, g)[:, 0]
    peak = lambda x: divmod(int(x.argmax()), 56)  # noqa: E731
    r0, c0 = peak(plain)
    shifts = {(r - r0, c - c0) for r, c in map(peak, shifted)}
    assert {abs(s) for shift in shifts for s in shift} == {0, 1, 2, 3, 4}


def test_paste_places_each_item_whole_at_a_side_in_range():
    """The backbone recipe's paste: a full 28x28 white item becomes one square of 24-40 px inside the frame,
    at spots and sides that vary, on faint noise."""
    items = torch.ones(300, 1, 28, 28)
    g = torch.Generator().manual_seed(0)
    x = data_mod.paste_items(items, (64, 64), (24, 40), g)
    assert x.shape == (300, 1, 64, 64)
    sides, corners = set(), set()
    for image in x[:, 0]:
        inside = image > 0.5
        rows, cols = inside.any(1).nonzero().flatten(), inside.any(0).nonzero().flatten()
        height, width = int(rows[-1] - rows[0]) + 1, int(cols[-1] - cols[0]) + 1
        assert 24 <= height <= 40 and abs(height - width) <= 1
        assert int(inside.sum()) >= (height - 1) * (width - 1)  # one solid square, not a scatter
        sides.add(height)
        corners.add((int(rows[0]), int(cols[0])))
    assert len(sides) >= 12 and len(corners) >= 200
    background = x[x < 0.5]
    assert 0 < background.mean() < 0.05 and background.min() >= 0
    # as a recipe: the same batches from the same generator, and flips still apply
    spec_pre = data_mod.Preprocessing((64, 64), resize=64, channel_order="L", mean=(0.5,), std=(0.5,))
    recipe = get_recipe("backbone").augment
    a = data_mod.idx_batch(torch.full((4, 1, 28, 28), 255, dtype=torch.uint8), spec_pre, recipe,
                           torch.Generator().manual_seed(1))  # fmt: skip
    b = data_mod.idx_batch(torch.full((4, 1, 28, 28), 255, dtype=torch.uint8), spec_pre, recipe,
                           torch.Generator().manual_seed(1))  # fmt: skip
    assert torch.equal(a, b) and a.shape == (4, 1, 64, 64)


def _image_folder(root: Path, classes=("cat", "dog"), per_class=8, corrupt=0, truncated=0) -> Path:
    from PIL import Image

    for split in ("train", "val"):
        for k, name in enumerate(classes):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.new("RGB", (40, 36), (200 * k, 50, 30 + i)).save(d / f"{i}.png")
    for i in range(corrupt):
        (root / "train" / classes[0] / f"corrupt{i}.jpg").write_bytes(b"not an image at all")
    for i in range(truncated):
        good = root / "train" / classes[1] / "0.png"
        (root / "train" / classes[1] / f"trunc{i}.png").write_bytes(good.read_bytes()[:60])
    return root


def test_image_folder_skips_and_counts_unreadable_images(tmp_path):
    root = _image_folder(tmp_path / "folder", corrupt=1, truncated=1)  # 18 train files, 2 unreadable
    out = tmp_path / "run"
    summary = train(
        TrainConfig(
            model=TINY,
            output=str(out),
            data=str(root),
            epochs=1,
            batch_size=6,
            resolution=32,
            progress=False,
            tensorboard=False,
            workers=0,
            threads=1,
        )
    )
    assert summary["skipped_train_images"] == 2
    assert summary["resolution"] == [32, 32] and summary["labels"] == ["cat", "dog"]
    assert (out / "best" / "model.safetensors").is_file()
    metrics = evaluate(out, str(root))
    assert metrics["images"] == 16 and metrics["split"] == "val" and 0 <= metrics["top1"] <= 100


def test_image_folder_empty_class_fails_before_training(tmp_path):
    root = _image_folder(tmp_path / "folder")
    (root / "train" / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        load_data(root, resolution=32)


# --- recipes -----------------------------------------------------------------------------------


def test_recipes_follow_the_papers():
    assert get_recipe("paper", "mobilenet_v3").optimizer == "rmsprop"
    assert get_recipe("paper", "mobilenet_v3").no_decay == "bn_bias_dw"
    shuffle = get_recipe("paper", "shufflenet_v1")
    assert (shuffle.optimizer, shuffle.schedule, shuffle.weight_decay) == ("sgd", "linear", 4e-5)
    with pytest.raises(ValueError, match="choose one of"):
        get_recipe("nope")
    with pytest.raises(ValueError, match="unknown recipe fields"):
        RECIPES["fast"].replace(lr_max=1)


def test_schedule_warms_up_then_decays_to_zero():
    recipe = RECIPES["fast"].replace(epochs=4, warmup_epochs=1)
    factors = [lr_factor(s, recipe, 10) for s in range(40)]
    assert factors[0] < factors[5] < factors[9] <= 1.0
    assert factors[-1] < 0.01 and all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))


def test_no_weight_decay_on_bn_bias_and_depthwise():
    model = mobilenets.create_model("mobilenet_v1_025", num_classes=10)
    decay, other = param_groups(model, 1e-5, "bn_bias_dw")
    dw = model.stages[0][0].dw.conv.weight
    assert all(p.ndim >= 2 for p in decay["params"])  # no BN weights or biases
    assert all(p.shape[1] != 1 for p in decay["params"])  # no depthwise kernels (C, 1, k, k)
    assert any(p is dw for p in other["params"])
    assert sum(p.numel() for g in (decay, other) for p in g["params"]) == sum(p.numel() for p in model.parameters())


# --- training, resume, faults --------------------------------------------------------------------


def test_train_then_eval_end_to_end(tmp_path, idx_dir, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "-m",
            "mobilenet_v1_025",
            "--data",
            str(idx_dir),
            "-o",
            str(out),
            "--epochs",
            "3",
            "-b",
            "16",
            "--stem-stride",
            "1",
            "--no-progress",
            "--threads",
            "1",
            "--lr",
            "0.05",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "top-1" in printed and "wall time of this command" in printed
    for name in (
        "best/model.safetensors",
        "best/config.json",
        "metrics.csv",
        "report.md",
        "report.json",
        "curves.png",
        "confusion.png",
        "run.json",
        "checkpoint.pt",
    ):
        assert (out / name).is_file(), name
    assert list((out / "tensorboard").iterdir())
    report = json.loads((out / "report.json").read_text())
    assert report["top1"] > 50  # the toy classes are separable; chance is 25%
    assert sum(map(sum, report["confusion"])) == 100
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,step,lr,train_loss") and len(rows) == 4

    assert evaluate(out, str(idx_dir))["top1"] == pytest.approx(report["top1"], abs=1e-3)
    assert main(["eval", str(out / "best"), "--data", str(idx_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] == pytest.approx(report["top1"], abs=1e-3)
    model = mobilenets.load_model(out / "best")
    assert model.config["options"]["stem_stride"] == 1 and model.labels == ["0", "1", "2", "3"]

    # Flip TTA: the same figure as averaging the model's logits over each image and its mirror by hand.
    tta = evaluate(out, str(idx_dir), tta=True)
    spec = load_data(str(idx_dir), preprocessing=model.preprocessing, in_chans=1, train_limit=1)
    x, y = data_mod.idx_batch(spec.val.images, model.preprocessing, None, None), spec.val.targets
    with torch.no_grad():
        logits = (model(x) + model(x.flip(-1))) / 2
    assert tta["tta"] and tta["top1"] == pytest.approx(100 * (logits.argmax(1) == y).float().mean().item(), abs=1e-3)
    assert tta["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-4)
    assert main(["eval", str(out), "--data", str(idx_dir), "--tta"]) == 0
    assert "(flip TTA)" in capsys.readouterr().out


def test_resume_ends_with_the_same_weights(tmp_path, idx_dir):
    small = dict(train_limit=128, val_limit=32, ema_decay=0.9)  # 4 steps per epoch
    train(tiny_config(idx_dir, tmp_path / "straight", **small))
    interrupted = tiny_config(idx_dir, tmp_path / "resumed", max_steps=6, **small)  # mid-epoch 2
    assert train(interrupted)["stopped_early"]
    assert not (tmp_path / "resumed" / "final").exists()  # only a finished run has a last epoch
    train(tiny_config(idx_dir, tmp_path / "resumed", **small), resume=True)
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # final/ is the last epoch's evaluated model (EMA weights when EMA is on), whichever epoch was best
    saved = torch.load(tmp_path / "resumed" / CHECKPOINT, map_location="cpu", weights_only=True)
    last = mobilenets.load_model(tmp_path / "resumed" / "final")
    expected = saved["ema"]
    assert all(torch.equal(v, expected[k]) for k, v in last.state_dict().items())
    assert last.metadata["epoch"] == 2


def test_compile_trains_through_torch_compile_to_the_eager_weights(tmp_path, idx_dir, monkeypatch):
    start = mobilenets.create_model(TINY, num_classes=4, in_chans=1, stem_stride=1)
    mobilenets.save_model(start, tmp_path / "start")
    small = dict(model=None, init=str(tmp_path / "start"), train_limit=64, val_limit=32, max_steps=1, ema_decay=0.0)
    train(tiny_config(idx_dir, tmp_path / "eager", **small))
    compiled = []
    real_compile = torch.compile

    def spy(module, *args, **kwargs):
        compiled.append(module)
        return real_compile(module, *args, **kwargs)

    monkeypatch.setattr(torch, "compile", spy)
    train(tiny_config(idx_dir, tmp_path / "compiled", compile=True, **small))
    assert len(compiled) == 1  # the training forward went through torch.compile
    a, b = final_weights(tmp_path / "eager"), final_weights(tmp_path / "compiled")
    assert a.keys() == b.keys()  # saved without torch.compile's "_orig_mod." prefix
    # The same step: the weight updates agree up to float reordering (~0.2%; later steps amplify it).
    init = start.state_dict()
    keys = [k for k in a if a[k].is_floating_point() and "running" not in k]
    update_a = torch.cat([(a[k] - init[k]).flatten() for k in keys])
    update_b = torch.cat([(b[k] - init[k]).flatten() for k in keys])
    assert update_a.norm() > 0
    assert (update_a - update_b).norm() < 0.02 * update_a.norm()


def test_init_fine_tunes_saved_weights_with_a_new_classifier(tmp_path, idx_dir):
    # A 7-class model with a non-default BN eps stands in for converted ImageNet weights.
    source = mobilenets.create_model(TINY, num_classes=7, in_chans=1, stem_stride=1, bn_eps=1e-3)
    with torch.no_grad():
        for p in source.parameters():
            p.uniform_(-0.1, 0.1)
    mobilenets.save_model(source, tmp_path / "pretrained")
    out = tmp_path / "run"
    # A vanishing lr: the loaded weights must come through training (nearly) unchanged.
    config = tiny_config(idx_dir, out, model=None, init=str(tmp_path / "pretrained"), lr=1e-9, ema_decay=0.0,
                         train_limit=64, val_limit=32, max_steps=1)  # fmt: skip
    assert train(config)["stopped_early"]
    (tmp_path / "pretrained").rename(tmp_path / "moved")  # resume must not need the init directory
    train(dataclasses.replace(config, max_steps=0), resume=True)
    tuned = mobilenets.load_model(out / "best")
    assert tuned.name == TINY and tuned.num_classes == 4 and tuned.options["bn_eps"] == 1e-3
    src = source.state_dict()
    for key, value in tuned.state_dict().items():
        if key.startswith("classifier."):
            assert value.shape[0] == 4
        elif key.endswith("weight") and "bn" not in key and value.dim() > 1:
            assert torch.allclose(value, src[key], atol=1e-6), key


def test_init_errors_name_the_fix(tmp_path, idx_dir, capsys):
    mobilenets.save_model(mobilenets.create_model(TINY, in_chans=3), tmp_path / "rgb")
    init = str(tmp_path / "rgb")
    with pytest.raises(ValueError, match="drop --model"):
        train(tiny_config(idx_dir, tmp_path / "a", model="mobilenet_v1_025", init=init))
    with pytest.raises(ValueError, match="pass --in-chans 3"):
        train(tiny_config(idx_dir, tmp_path / "b", model=None, init=init, in_chans=1))
    with pytest.raises(FileNotFoundError, match="not a directory"):
        train(tiny_config(idx_dir, tmp_path / "c", model=None, init=str(tmp_path / "missing")))
    assert main(["train", "--init", init, "--in-chans", "1", "-d", str(idx_dir), "-o", str(tmp_path / "d")]) == 2
    assert "pass --in-chans 3" in capsys.readouterr().err


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mobilenets", *args]


@pytest.mark.slow  # three processes, about a minute on a busy 2-core machine
def test_sigkill_loses_at_most_one_checkpoint_interval(tmp_path, idx_dir):
    env = {**os.environ, "PYTHONPATH": SRC}
    common = [
        "--data",
        str(idx_dir),
        "-b",
        "32",
        "-r",
        "32",
        "--stem-stride",
        "1",
        "--deterministic",
        "--threads",
        "1",
        "--no-progress",
        "--no-tensorboard",
        "--checkpoint-every",
        "2",
        "--epochs",
        "4",
    ]
    run = tmp_path / "killed"
    proc = subprocess.Popen(_cli("train", "-m", TINY, "-o", str(run), *common), env=env, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (run / CHECKPOINT).exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = torch.load(run / CHECKPOINT, weights_only=True)["state"]["step"]
    assert killed_at < 32
    subprocess.run(_cli("train", "--resume", str(run)), env=env, check=True, capture_output=True)
    subprocess.run(
        _cli("train", "-m", TINY, "-o", str(tmp_path / "straight"), *common), env=env, check=True, capture_output=True
    )
    a, b = final_weights(run), final_weights(tmp_path / "straight")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, idx_dir):
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="last good"):
        train(tiny_config(idx_dir, out, lr=1e12, checkpoint_every=1, epochs=4))
    ckpt = torch.load(out / CHECKPOINT, weights_only=True)
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert ckpt["state"]["step"] >= 1


def test_cli_errors_are_one_line(tmp_path, idx_dir, capsys):
    assert main(["train", "--data", str(idx_dir)]) == 2
    assert "needs --model" in capsys.readouterr().err
    out = tmp_path / "run"
    train(tiny_config(idx_dir, out, max_steps=1))
    assert main(["train", "-m", TINY, "--data", str(idx_dir), "-o", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "nothing")]) == 2
    assert "neither a run directory" in capsys.readouterr().err
    assert main(["train", "-m", TINY, "--data", str(tmp_path / "nope"), "-o", str(tmp_path / "r2")]) == 2
    assert "no such directory" in capsys.readouterr().err


# --- distributed ---------------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ddp_step_matches_one_process_on_the_same_global_batch(tmp_path, idx_dir):
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    common = [
        "-m",
        TINY,
        "--data",
        str(idx_dir),
        "-b",
        "32",
        "-r",
        "32",
        "--stem-stride",
        "1",
        "--max-steps",
        "1",
        "--no-augment",
        "--drop-rate",
        "0",
        "--threads",
        "1",
        "--no-progress",
        "--no-tensorboard",
    ]
    ddp = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={_free_port()}",
        "-m",
        "mobilenets",
        "train",
        *common,
        "-o",
        str(tmp_path / "ddp"),
    ]
    subprocess.run(ddp, env=env, check=True, capture_output=True, timeout=300)
    # One process sees the global batch as the two ranks' shards, accumulated (BN statistics per shard, as DDP).
    subprocess.run(
        _cli("train", *common, "--accum-steps", "2", "-o", str(tmp_path / "single")),
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    a, b = final_weights(tmp_path / "ddp"), final_weights(tmp_path / "single")
    torch.manual_seed(0)  # the run's seed: the initial weights
    init = mobilenets.create_model(TINY, num_classes=4, in_chans=1, stem_stride=1)
    names = [name for name, _ in init.named_parameters()]
    for name in names:
        assert torch.allclose(a[name], b[name], atol=1e-6, rtol=1e-5), name
    assert any(not torch.equal(a[n], init.state_dict()[n]) for n in names), "the step changed no weights"


# --- the opt-in small-input stem ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mobilenet_v1_025", "mobilenet_v2_035", "mobilenet_v3_small_minimal_100"])
def test_stem_stride_is_opt_in_and_recorded(name):
    paper = mobilenets.create_model(name, num_classes=10, in_chans=1)
    small = mobilenets.create_model(name, num_classes=10, in_chans=1, stem_stride=1)
    assert "stem_stride" not in paper.config["options"] and small.config["options"]["stem_stride"] == 1
    assert paper.state_dict().keys() == small.state_dict().keys()
    assert small(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert [f.reduction for f in small.stage_features()] == [f.reduction // 2 for f in paper.stage_features()]
    with pytest.raises(ValueError, match="needs inputs of at least 32x32"):
        paper(torch.randn(1, 1, 28, 28))
    with pytest.raises(ValueError, match="stem_stride must be 2"):
        mobilenets.create_model(name, stem_stride=4)


def test_the_main_jobs_recipe_is_the_measured_one():
    """`make run` trains with the recipe docs/fashion-mnist.md measured for 3 seeds (92.79/92.42/92.52%)."""
    recipe = get_recipe("main")
    assert (recipe.batch_size, recipe.lr, recipe.epochs, recipe.augment) == (128, 0.2, 12, {"hflip": True})
    assert recipe.replace(name="fast") == get_recipe("fast").replace(batch_size=128, lr=0.2, epochs=12,
                                                                     augment={"hflip": True})  # fmt: skip
    makefile = (Path(__file__).parents[1] / "Makefile").read_text()
    assert "--recipe main" in makefile and "EPOCHS ?= 12" in makefile


# --- issue 33: choices on a validation split carved from train, the test split once, for the final model ------


def test_fashion_mnist_like_data_gets_a_validation_split_carved_from_train(tmp_path):
    from mobilenets.data.classification import carved_size, load_data

    idx = make_idx_dir(tmp_path / "idx", n_train=120, n_test=30)
    plain = load_data(str(idx), resolution=32, in_chans=1)
    assert plain.val.name == "test" and plain.test is None  # eval, quantize, NetAdapt: as before
    spec = load_data(str(idx), resolution=32, in_chans=1, carve_val=True)
    assert (len(spec.train), len(spec.val), len(spec.test)) == (110, carved_size(120), 30) == (110, 10, 30)
    assert spec.val.name == "val" and spec.test.name == "test"
    rows = {tuple(img.flatten().tolist()) for img in plain.train.images}
    train_rows = [tuple(img.flatten().tolist()) for img in spec.train.images]
    val_rows = [tuple(img.flatten().tolist()) for img in spec.val.images]
    assert set(val_rows) <= rows and len(set(train_rows) | set(val_rows)) == len(train_rows) + len(val_rows)
    assert torch.equal(spec.test.images, plain.val.images)
    again = load_data(str(idx), resolution=32, in_chans=1, carve_val=True)
    assert torch.equal(again.val.images, spec.val.images)  # the same carve every time, whatever the run's seed


def test_a_run_reports_its_final_model_on_test_and_chooses_best_on_val(tmp_path, capsys):
    from mobilenets.cli import main

    idx = make_idx_dir(tmp_path / "idx", n_train=200, n_test=40)
    run = tmp_path / "run"
    argv = ["train", "-m", TINY, "-d", str(idx), "-b", "32", "-r", "32", "--stem-stride", "1", "--threads", "1",
            "--epochs", "3", "--no-progress", "--no-tensorboard", "--workers", "0", "-o", str(run)]  # fmt: skip
    assert main(argv) == 0
    headline = capsys.readouterr().out.splitlines()[0]
    report = json.loads((run / "report.json").read_text())
    assert report["split"] == "test" and report["model_dir"] == "final" and report["val_split"] == "val"
    assert report["val_images"] == 17 and f"final epoch's test top-1 {report['top1']:.2f}%" in headline
    with open(run / "metrics.csv", newline="") as f:
        val = [float(r["val_top1"]) for r in csv.DictReader(f)]
    assert report["best_val_top1"] == pytest.approx(max(val), abs=1e-3) and val[report["best_epoch"] - 1] == max(val)
    assert main(["eval", str(run / "final"), "--data", str(idx), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] == pytest.approx(report["top1"], abs=1e-3)


def test_a_model_that_predicts_one_class_for_everything_is_warned_about(caplog):
    from mobilenets.tasks.classification import warn_if_collapsed

    labels = ["a", "b", "c"]
    with caplog.at_level("WARNING"):
        assert warn_if_collapsed([[0, 4, 0], [0, 3, 0], [0, 5, 0]], labels, "the final model on test")
    assert "predicts 'b' for every one of its 12 images" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert not warn_if_collapsed([[3, 1, 0], [0, 3, 0], [0, 5, 0]], labels, "x")
    assert caplog.text == ""
