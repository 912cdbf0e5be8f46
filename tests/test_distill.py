"""Distillation: `train --teacher`, the loss it adds, and the teacher's checks."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest
import torch

import mobilenets
from mobilenets.cli import main
from mobilenets.tasks.classification import ClassificationTask
from mobilenets.training import train
from test_training import TINY, final_weights, make_idx_dir, tiny_config


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory) -> Path:
    return make_idx_dir(tmp_path_factory.mktemp("idx"))


@pytest.fixture(scope="module")
def teacher(idx_dir, tmp_path_factory) -> Path:
    """A teacher trained on the same data, resolution and labels (a few steps suffice)."""
    out = tmp_path_factory.mktemp("teacher") / "run"
    train(tiny_config(idx_dir, out, epochs=1, train_limit=128, val_limit=32))
    return out / "best"


class _StandIn(torch.nn.Module):
    """A teacher given as a function of the inputs."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def _task(weight: float, temperature: float, hflip: bool) -> ClassificationTask:
    task = ClassificationTask()
    task.smoothing, task.distill = 0.1, (weight, temperature)
    task.spec = type("Spec", (), {"augment": {"hflip": hflip}})()
    return task


def test_the_loss_mixes_label_cross_entropy_and_kl_to_the_teacher_at_temperature_t():
    torch.manual_seed(0)
    student, teacher_logits, labels = torch.randn(6, 5), torch.randn(6, 5), torch.randint(0, 5, (6,))
    weight, t = 0.7, 3.0
    task = _task(weight, t, hflip=False)
    task.teacher = _StandIn(lambda x: teacher_logits)  # the inputs do not matter to this stand-in
    targets = task.batch_targets(torch.zeros(6, 1, 8, 8), labels)
    loss, stats = task.loss(student, targets, None)
    p = torch.softmax(teacher_logits / t, 1)
    q = torch.log_softmax(student / t, 1)
    kl = (p * (p.log() - q)).sum(1).mean()
    ce = torch.nn.functional.cross_entropy(student, labels, label_smoothing=0.1)
    assert loss.item() == pytest.approx((1 - weight) * ce.item() + weight * t * t * kl.item(), rel=1e-5)
    assert stats["top1"] == 100.0 * (student.argmax(1) == labels).sum().item()
    # a student that already matches the teacher pays only the label term
    same, _ = _task(1.0, t, hflip=False).loss(teacher_logits, (labels, p), None)
    assert same.item() == pytest.approx(0.0, abs=1e-6)


def test_a_recipe_that_flips_averages_the_teacher_over_the_mirror_image():
    task = _task(0.5, 1.0, hflip=True)
    # a teacher that sees only the left half: its mirror view sees the right half
    task.teacher = _StandIn(lambda x: torch.stack([x[..., :4].sum((1, 2, 3)), x[..., 4:].sum((1, 2, 3))], 1))
    x = torch.zeros(1, 1, 8, 8)
    x[..., :4] = 2.0
    _, probs = task.batch_targets(x, torch.tensor([0]))
    one_view = torch.softmax(torch.tensor([[8.0 * 4, 0.0]]), 1)
    assert torch.allclose(probs, (one_view + one_view.flip(1)) / 2)  # [0.5, 0.5], not one view's [1, 0]
    task.spec.augment = {"hflip": False}
    assert torch.allclose(task.batch_targets(x, torch.tensor([0]))[1], one_view)


def test_train_with_a_teacher_changes_the_loss_records_it_and_resumes_without_asking_again(tmp_path, idx_dir, teacher):
    small = dict(train_limit=64, val_limit=32, epochs=1, ema_decay=0.0)
    plain = tiny_config(idx_dir, tmp_path / "plain", **small)
    train(plain)
    kd = dict(teacher=str(teacher), distill_weight=0.9, distill_temperature=2.0)
    train(dataclasses.replace(plain, output=str(tmp_path / "kd"), **kd))
    losses = [float(next(csv.DictReader(open(tmp_path / d / "metrics.csv")))["train_loss"]) for d in ("plain", "kd")]
    assert losses[0] != pytest.approx(losses[1], rel=1e-3)  # the same batches and initialisation, another loss
    stopped = dataclasses.replace(plain, output=str(tmp_path / "stopped"), max_steps=1, **kd)
    assert train(stopped)["stopped_early"]
    saved = json.loads((tmp_path / "stopped" / "run.json").read_text())["config"]
    assert (saved["teacher"], saved["distill_weight"], saved["distill_temperature"]) == (str(teacher), 0.9, 2.0)
    assert main(["train", "--resume", str(tmp_path / "stopped"), "--no-progress"]) == 0
    resumed, whole = final_weights(tmp_path / "stopped"), final_weights(tmp_path / "kd")
    assert all(torch.allclose(resumed[k], whole[k], atol=1e-6) for k in whole)  # exact resume, teacher included


def test_teacher_errors_are_one_line_and_exit_2(tmp_path, idx_dir, teacher, capsys):
    base = ["train", "-m", TINY, "--stem-stride", "1", "-d", str(idx_dir), "--no-progress"]
    mobilenets.save_model(mobilenets.create_model(TINY, num_classes=7, in_chans=1, stem_stride=1), tmp_path / "m7")
    cases = {
        "--distill-weight must be in (0, 1]": ["-r", "32", "--teacher", str(teacher), "--distill-weight", "1.5"],
        "--distill-temperature > 0": ["-r", "32", "--teacher", str(teacher), "--distill-temperature", "0"],
        "distil from a model trained on these labels": ["-r", "32", "--teacher", str(tmp_path / "m7")],
        "give --resolution": ["-r", "40", "--teacher", str(teacher)],
        "not a directory": ["-r", "32", "--teacher", str(tmp_path / "missing")],
        "go with --teacher MODEL_DIR": ["-r", "32", "--distill-temperature", "4"],
    }
    for i, (message, extra) in enumerate(cases.items()):
        assert main([*base, *extra, "-o", str(tmp_path / f"run{i}")]) == 2, message
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err
    detection = ["train", "-m", "ssdlite_mobilenet_v3_small_100", "-d", "fmnist-det", "--teacher", str(teacher), "-o",
                 str(tmp_path / "det")]  # fmt: skip
    assert main(detection) == 2
    assert "--teacher distils a classifier" in capsys.readouterr().err
