"""What we write and read: the output policy, file modes, checkpoint safety, exact resume, NaN guards."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import stat
from pathlib import Path

import pytest
import torch

import mobilenets
from mobilenets import Preprocessing
from mobilenets.cli import main
from mobilenets.io import OutputExistsError, atomic_write_text, save_model
from mobilenets.tasks import classification as classification_mod
from mobilenets.training import TrainingDiverged, get_recipe, resume_config, train
from mobilenets.training import engine as engine_mod
from mobilenets.training.engine import CHECKPOINT, RUN_CONFIG
from test_training import TINY, make_idx_dir, tiny_config


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory) -> Path:
    return make_idx_dir(tmp_path_factory.mktemp("idx"))


def _tiny_model():
    return mobilenets.create_model(TINY, num_classes=3, in_chans=1)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _checkout(root: Path) -> Path:
    """A stand-in for a source checkout: what `-o .` used to delete."""
    (root / "src").mkdir(parents=True)
    (root / "src" / "code.py").write_text("print('mine')\n")
    (root / "README.md").write_text("my notes\n")
    return root


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


# --- the output policy ------------------------------------------------------------------------------


def test_a_non_empty_foreign_directory_is_refused_and_left_untouched(tmp_path, monkeypatch, capsys):
    checkout = _checkout(tmp_path / "checkout")
    before = _snapshot(checkout)
    with pytest.raises(OutputExistsError, match="is not empty and is not a model directory"):
        save_model(_tiny_model(), checkout)
    with pytest.raises(OutputExistsError, match="is not empty"):
        save_model(_tiny_model(), checkout, overwrite=True)  # --overwrite is for model directories only
    monkeypatch.chdir(checkout)
    argv = ["convert", "x.pth", "--from", "torchvision", "--model", "mobilenet_v3_small", "-o", ".", "--overwrite"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("mobilenets convert: error: ") and err.count("\n") == 1 and "is not empty" in err
    assert _snapshot(checkout) == before and sorted(p.name for p in tmp_path.iterdir()) == ["checkout"]
    (tmp_path / "file").write_text("mine")
    with pytest.raises(OutputExistsError, match="not a directory"):
        save_model(_tiny_model(), tmp_path / "file", overwrite=True)
    assert (tmp_path / "file").read_text() == "mine"


def test_a_model_directory_is_replaced_only_with_overwrite(tmp_path, capsys):
    first, second = _tiny_model(), mobilenets.create_model("mobilenet_v1_025", num_classes=2)
    save_model(first, tmp_path / "m")
    before = _snapshot(tmp_path / "m")
    with pytest.raises(OutputExistsError, match="already holds a model directory; pass --overwrite"):
        save_model(second, tmp_path / "m")
    assert _snapshot(tmp_path / "m") == before
    save_model(second, tmp_path / "m", overwrite=True)
    assert mobilenets.load_model(tmp_path / "m").name == "mobilenet_v1_025"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary leftovers
    # The CLI says the same, in one line, before converting anything.
    assert (
        main(["convert", "x.pth", "--from", "megvii", "--model", "shufflenet_v1_g3_050", "-o", str(tmp_path / "m")])
        == 2
    )
    assert "--overwrite" in capsys.readouterr().err


def test_an_empty_directory_even_the_current_one_is_written_into(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")
    save_model(_tiny_model(), ".")
    assert sorted(p.name for p in Path.cwd().iterdir()) == ["config.json", "model.safetensors"]
    assert mobilenets.load_model(".").num_classes == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_export_and_quantize_refuse_an_existing_file_without_overwrite(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    model = mobilenets.create_model(TINY, num_classes=3, in_chans=1, stem_stride=1)
    save_model(
        model, tmp_path / "m", preprocessing=Preprocessing((32, 32), 0, channel_order="L", mean=(0.5,), std=(0.5,))
    )
    target = tmp_path / "out.onnx"
    target.write_bytes(b"mine")
    for argv in (["export", str(tmp_path / "m"), "-o", str(target)],
                 ["quantize", str(tmp_path / "m"), "--data", str(tmp_path / "nodata"), "-o", str(target)]):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "already exists; pass --overwrite" in err, err
        assert target.read_bytes() == b"mine"
    assert main(["export", str(tmp_path / "m"), "-o", str(tmp_path / "m")]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "m"), "-o", str(target), "--overwrite"]) == 0
    assert target.read_bytes()[:4] != b"mine"


def test_train_output_is_new_or_empty_and_a_run_is_started_over_only_with_overwrite(tmp_path, idx_dir, capsys):
    checkout = _checkout(tmp_path / "checkout")
    before = _snapshot(checkout)
    common = ["train", "-m", TINY, "-d", str(idx_dir), "-b", "32", "-r", "32", "--stem-stride", "1", "--threads", "1"]
    common += ["--no-progress", "--no-tensorboard", "--train-limit", "64", "--val-limit", "16", "--max-steps", "1"]
    assert main([*common, "-o", str(checkout), "--overwrite"]) == 2
    assert "is not empty and is not a run" in capsys.readouterr().err
    assert _snapshot(checkout) == before
    run = tmp_path / "run"
    run.mkdir()  # an empty directory is fine
    assert main([*common, "-o", str(run)]) == 0
    (run / "notes.txt").write_text("old run")
    assert main([*common, "-o", str(run)]) == 2
    assert f"--resume {run}, or pass --overwrite" in capsys.readouterr().err
    assert (run / "notes.txt").is_file()
    assert main([*common, "-o", str(run), "--overwrite"]) == 0
    assert (run / "notes.txt").read_text() == "old run" and (run / CHECKPOINT).is_file()  # only ours was replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkout", "run"]


# --- issue 33: nothing of the user's is lost --------------------------------------------------------


def _train_argv(idx_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "-m", TINY, "-d", str(idx_dir), "-b", "32", "-r", "32", "--stem-stride", "1", "--threads", "1",
            "--no-progress", "--no-tensorboard", "--train-limit", "64", "--val-limit", "16", "--epochs", "1",
            "-o", str(out), *extra]  # fmt: skip


@pytest.mark.parametrize("planted", ["run.json", "checkpoint.pt"])
def test_overwrite_refuses_a_folder_that_merely_holds_a_file_named_like_ours(tmp_path, idx_dir, capsys, planted):
    folder = tmp_path / "thesis"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "table.csv").write_text("1,2\n")
    (folder / "thesis.tex").write_text("\\section{Intro}\n")
    (folder / planted).write_text('{"my": "settings"}\n')
    before = _snapshot(folder)
    for extra in (["--overwrite"], []):
        assert main(_train_argv(idx_dir, folder, *extra)) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is not empty and is not a run" in err, err
        assert _snapshot(folder) == before
    assert main(["train", "--resume", str(folder)]) == 2
    assert _snapshot(folder) == before


def test_overwrite_of_our_run_deletes_only_what_we_wrote(tmp_path, idx_dir):
    run = tmp_path / "run"
    assert main(_train_argv(idx_dir, run)) == 0
    (run / "notes.md").write_text("what I tried")
    (run / "best" / "model.onnx").write_bytes(b"an export of mine")
    (run / "plots").mkdir()
    (run / "plots" / "mine.png").write_bytes(b"png")
    old_checkpoint = (run / CHECKPOINT).stat().st_mtime_ns
    assert main(_train_argv(idx_dir, run, "--overwrite")) == 0
    assert (run / "notes.md").read_text() == "what I tried"
    assert (run / "best" / "model.onnx").read_bytes() == b"an export of mine"
    assert (run / "plots" / "mine.png").read_bytes() == b"png"
    assert (run / CHECKPOINT).stat().st_mtime_ns != old_checkpoint and mobilenets.load_model(run / "best")


def test_replacing_a_model_directory_keeps_the_files_we_did_not_write(tmp_path):
    save_model(_tiny_model(), tmp_path / "m")
    (tmp_path / "m" / "model.onnx").write_bytes(b"exported earlier")
    (tmp_path / "m" / "NOTE.txt").write_text("trained on the March data")
    save_model(mobilenets.create_model("mobilenet_v1_025", num_classes=2), tmp_path / "m", overwrite=True)
    assert mobilenets.load_model(tmp_path / "m").name == "mobilenet_v1_025"
    assert (tmp_path / "m" / "model.onnx").read_bytes() == b"exported earlier"
    assert (tmp_path / "m" / "NOTE.txt").read_text() == "trained on the March data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary leftovers


def test_a_run_directory_in_use_is_refused(tmp_path, idx_dir, capsys):
    from mobilenets.training.checkpoint import run_lock

    run = tmp_path / "run"
    with run_lock(run):  # another process's train, as far as flock can tell (a separate open file)
        assert main(_train_argv(idx_dir, run)) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "in use by another mobilenets process" in err, err
        assert list(run.iterdir()) == []
    assert main(_train_argv(idx_dir, run)) == 0
    with run_lock(run):
        assert main(["train", "--resume", str(run)]) == 2
        assert "in use" in capsys.readouterr().err


def test_a_failed_start_leaves_no_folder_behind(tmp_path, idx_dir):
    argv = _train_argv(idx_dir, tmp_path / "new")
    argv[argv.index("-r") + 1] = "4"  # refused by the data loader, after the directory was locked
    assert main(argv) == 2
    assert not (tmp_path / "new").exists()
    assert main(_train_argv(idx_dir, tmp_path / "nan", "--lr", "nan")) == 2  # refused before anything runs
    assert not (tmp_path / "nan").exists()


def test_temporary_files_of_a_killed_process_are_swept_by_the_next_write(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    left = tmp_path / f".model.onnx.{pid}-abc123xy.tmp"  # what kill -9 during an export leaves
    left.write_bytes(b"half")
    left_dir = tmp_path / f".model.onnx.{pid}-zz9.tmp"
    left_dir.mkdir()
    alive = tmp_path / f".model.onnx.{os.getpid()}-busy.tmp"  # a live writer's: not ours to remove
    alive.write_bytes(b"busy")
    users = [tmp_path / ".model.onnx.notes.tmp", tmp_path / ".model.onnx.123.tmp"]
    for path in users:
        path.write_text("mine")
    atomic_write_text(tmp_path / "model.onnx", "new")
    assert not left.exists() and not left_dir.exists()
    assert alive.exists() and all(p.read_text() == "mine" for p in users)
    assert (tmp_path / "model.onnx").read_text() == "new"


# --- file modes ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_written_files_and_directories_follow_the_umask(tmp_path, idx_dir, mask):
    with _umask(mask):
        save_model(_tiny_model(), tmp_path / "m")
        atomic_write_text(tmp_path / "notes.txt", "hello")
        run = tmp_path / "run"
        train(tiny_config(idx_dir, run, train_limit=64, val_limit=16, epochs=1))
    assert _mode(tmp_path / "m") == 0o777 & ~mask
    written = [tmp_path / "m" / "model.safetensors", tmp_path / "m" / "config.json", tmp_path / "notes.txt"]
    written += [run / CHECKPOINT, run / RUN_CONFIG, run / "metrics.csv", run / "best" / "model.safetensors"]
    for path in written:
        assert _mode(path) == 0o666 & ~mask, path
    assert _mode(run) == _mode(run / "best") == 0o777 & ~mask
    # Rewriting a file keeps the mode its owner gave it.
    os.chmod(tmp_path / "notes.txt", 0o600)
    atomic_write_text(tmp_path / "notes.txt", "again")
    assert _mode(tmp_path / "notes.txt") == 0o600


# --- resume: what may change, what is read --------------------------------------------------------------


def _cli_run(idx_dir: Path, run: Path, *extra: str) -> list[str]:
    return ["train", "-m", TINY, "-d", str(idx_dir), "-o", str(run), "-b", "32", "-r", "32", "--stem-stride", "1",
            "--threads", "1", "--train-limit", "64", "--val-limit", "16", "--epochs", "2", *extra]  # fmt: skip


def test_resume_keeps_saved_settings_applies_safe_ones_and_refuses_the_rest(tmp_path, idx_dir, capsys):
    run = tmp_path / "run"
    argv = _cli_run(idx_dir, run, "--checkpoint-every", "1", "--workers", "0", "--no-progress", "--no-tensorboard",
                    "--max-steps", "1")  # fmt: skip
    assert main(argv) == 0
    assert main(["train", "--resume", str(run), "--max-steps", "2"]) == 0
    saved = json.loads((run / RUN_CONFIG).read_text())["config"]
    assert (saved["checkpoint_every"], saved["workers"], saved["progress"], saved["tensorboard"]) == (
        1,
        0,
        False,
        False,
    )
    assert not (run / "tensorboard").exists()
    for option, value in (("--lr", "0.5"), ("--recipe", "long"), ("--seed", "3"), ("-b", "16"), ("--no-augment", None)):
        extra = [option] if value is None else [option, value]
        assert main(["train", "--resume", str(run), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("mobilenets train: error: ") and err.count("\n") == 1
        assert ("--batch-size" if option == "-b" else option) + " cannot change on --resume" in err, err
    assert _load(run / CHECKPOINT)["state"]["step"] == 2  # the refused resumes trained nothing
    # Repeating an unchanged option is fine; a safe one is applied (and kept for the next resume).
    assert main(["train", "--resume", str(run), "--seed", "0", "--workers", "1", "--max-steps", "3"]) == 0
    assert json.loads((run / RUN_CONFIG).read_text())["config"]["workers"] == 1
    # The engine refuses the same changes from Python.
    with pytest.raises(ValueError, match="--lr cannot change"):
        resume_config(run, lr=0.5)
    with pytest.raises(ValueError, match="--drop-rate cannot change"):
        train(dataclasses.replace(resume_config(run), drop_rate=0.5), resume=True)


class _Payload:
    """Unpickling this would create a file: the checkpoint loader must refuse it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_a_checkpoint_with_pickled_objects_is_refused_not_executed(tmp_path, idx_dir, capsys):
    run = tmp_path / "run"
    train(tiny_config(idx_dir, run, train_limit=64, val_limit=16, max_steps=1))
    marker = tmp_path / "pwned"
    ckpt = _load(run / CHECKPOINT)  # ours loads with weights_only=True
    torch.save({**ckpt, "extra": _Payload(marker)}, run / CHECKPOINT)
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "refusing" in err and err.count("\n") == 1
    assert "False" not in err and "safe_globals" not in err and "\x1b" not in err  # never torch's advice
    assert "it refers to getattr, which is not a tensor" in err  # what the payload calls
    assert not marker.exists()


# --- exact resume with augmentation, dropout and EMA -------------------------------------------------------


def _long_config(idx_dir: Path, out: Path, **overrides):
    # The long recipe (crop, flip, random erasing, dropout 0.2, EMA 0.999) on 4 steps per epoch.
    return tiny_config(idx_dir, out, recipe="long", train_limit=128, val_limit=32, checkpoint_every=0, **overrides)


def test_resume_with_augmentation_dropout_and_ema_is_exact(tmp_path, idx_dir):
    recipe = get_recipe("long")
    assert recipe.augment.get("erase") and recipe.augment.get("hflip") and recipe.drop_rate and recipe.ema_decay
    train(_long_config(idx_dir, tmp_path / "straight"))
    assert train(_long_config(idx_dir, tmp_path / "resumed", max_steps=5))["stopped_early"]  # mid-epoch 2
    train(_long_config(idx_dir, tmp_path / "resumed"), resume=True)
    a, b = _load(tmp_path / "straight" / CHECKPOINT), _load(tmp_path / "resumed" / CHECKPOINT)
    assert a["state"]["step"] == b["state"]["step"] == 8
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    assert any(not torch.equal(a["model"][k], a["ema"][k]) for k in a["model"])  # the EMA is not the weights
    # The interrupted epoch's metrics.csv row counts all its steps, those before the interruption too.
    rows = [_csv_rows(tmp_path / name / "metrics.csv") for name in ("straight", "resumed")]
    for key in ("epoch", "step", "lr", "train_loss", "train_top1", "val_top1", "val_loss"):
        assert [r[key] for r in rows[0]] == [r[key] for r in rows[1]], key


def _csv_rows(path: Path) -> list[dict]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- NaN guards and the checkpoint write ----------------------------------------------------------------------


def test_nan_loss_stops_before_the_step_that_would_spoil_the_weights(tmp_path, idx_dir, monkeypatch):
    real, calls = classification_mod.idx_batch, []

    def nan_on_third(*args, **kwargs):
        x = real(*args, **kwargs)
        calls.append(1)
        return torch.full_like(x, float("nan")) if len(calls) == 3 else x

    monkeypatch.setattr(classification_mod, "idx_batch", nan_on_third)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 1, step 3; the last good checkpoint"):
        train(tiny_config(idx_dir, out, checkpoint_every=1, train_limit=128, val_limit=16))
    ckpt = _load(out / CHECKPOINT)
    assert ckpt["state"]["step"] == 2


def test_non_finite_weights_are_never_checkpointed(tmp_path, idx_dir, monkeypatch):
    real = engine_mod.make_optimizer

    def spoiling(model, recipe):
        optimizer = real(model, recipe)
        steps = []

        def after_step(opt, args, kwargs):
            steps.append(1)
            if len(steps) == 2:  # the loss of this step was finite; the weights now are not
                with torch.no_grad():
                    next(model.parameters()).fill_(float("inf"))

        optimizer.register_step_post_hook(after_step)
        return optimizer

    monkeypatch.setattr(engine_mod, "make_optimizer", spoiling)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="weights became non-finite at step 2"):
        train(tiny_config(idx_dir, out, checkpoint_every=1, train_limit=128, val_limit=16))
    ckpt = _load(out / CHECKPOINT)
    assert ckpt["state"]["step"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_a_crash_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, idx_dir, monkeypatch):
    real, calls = torch.save, []

    def dies_midway(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) == 2:
            Path(f).write_bytes(b"half a checkpoint")
            raise OSError("disk full")
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", dies_midway)
    out = tmp_path / "run"
    with pytest.raises(OSError, match="disk full"):
        train(tiny_config(idx_dir, out, checkpoint_every=1, train_limit=128, val_limit=16))
    monkeypatch.setattr(torch, "save", real)
    assert _load(out / CHECKPOINT)["state"]["step"] == 1
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_bench_plot_never_replaces_an_existing_file_unasked(tmp_path, capsys):
    picture = tmp_path / "mine.png"
    picture.write_bytes(b"a picture of mine")
    assert main(["bench", "mobilenet_v1_025", "--runtimes", "eager", "--plot", str(picture)]) == 2
    assert picture.read_bytes() == b"a picture of mine"
    assert "--overwrite" in capsys.readouterr().err
