"""A new task plugs into the training engine without a copy of the loop: a toy regression task, with resume."""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F

import mobilenets
from mobilenets.training import TrainConfig, fit
from mobilenets.training.checkpoint import CHECKPOINT
from mobilenets.training.report import write_markdown
from mobilenets.training.task import Task


class BrightnessRegression(Task):
    """Predict each image's mean brightness: one output, MSE loss, scored by negative validation MSE."""

    name = "brightness-regression"
    best_metric = "neg_mse"

    def setup(self, config, recipe, *, run_dir, resume):
        g = torch.Generator().manual_seed(123)
        self.train_x = torch.rand(96, 1, 32, 32, generator=g) * torch.rand(96, 1, 1, 1, generator=g)
        self.val_x = torch.rand(32, 1, 32, 32, generator=g) * torch.rand(32, 1, 1, 1, generator=g)
        model = mobilenets.create_model(config.model, num_classes=1, in_chans=1, stem_stride=1, drop_rate=0.0)
        return model

    def describe(self):
        return f"{len(self.train_x)} random images"

    def record(self):
        return {"target": "mean brightness"}

    def train_size(self):
        return len(self.train_x)

    def train_batches(self, order, batch_size, *, generator, workers, shard, start, loader_seed):
        for i in range(start * batch_size, len(order), batch_size):
            idx = order[i : i + batch_size][shard[0] :: shard[1]]
            x = self.train_x[idx]
            x = x + 0.01 * torch.randn(x.shape, generator=generator)  # augmentation drawn from the run's generator
            yield x, x.mean((1, 2, 3)), 0

    def loss(self, outputs, targets, recipe):
        loss = F.mse_loss(outputs[:, 0].float(), targets)
        return loss, {"abs_err": (outputs[:, 0] - targets).abs().sum().item()}

    def evaluate(self, model, *, device, channels_last, bf16, workers, batch_size):
        model.eval()
        with torch.no_grad():
            mse = F.mse_loss(model(self.val_x)[:, 0], self.val_x.mean((1, 2, 3))).item()
        return {"mse": mse, "neg_mse": -mse}

    def save_model(self, model, directory, metadata):
        mobilenets.save_model(model, directory, metadata=metadata, overwrite=True)

    def report(self, out, best_dir, *, config, recipe, state, wall_seconds):
        summary = {"task": self.name, "best_epoch": state.best_epoch, "best_mse": -state.best_score}
        (out / "report.json").write_text(json.dumps(summary))
        write_markdown(out, "brightness", [f"- best MSE {-state.best_score:.4g}"], state.history, [])
        return summary


def _config(out, **overrides):
    base = dict(model="mobilenet_v3_small_minimal_100", output=str(out), data="random", recipe="long", epochs=2,
                batch_size=16, lr=0.01, label_smoothing=0.0, checkpoint_every=2, progress=False, tensorboard=False,
                deterministic=True, threads=1, workers=0)  # fmt: skip
    base.update(overrides)
    return TrainConfig(**base)


def test_a_new_task_trains_through_the_engine_and_resumes_exactly(tmp_path):
    whole = fit(BrightnessRegression(), _config(tmp_path / "whole"))
    assert whole["task"] == "brightness-regression" and whole["best_epoch"] in (1, 2)
    rows = (tmp_path / "whole" / "metrics.csv").read_text().splitlines()
    assert rows[0].split(",")[:5] == ["epoch", "step", "lr", "train_loss", "train_abs_err"]
    assert "val_mse" in rows[0] and len(rows) == 3
    assert mobilenets.load_model(tmp_path / "whole" / "best").num_classes == 1
    assert json.loads((tmp_path / "whole" / "run.json").read_text())["target"] == "mean brightness"

    # Interrupted mid-epoch (the `long` recipe: EMA, dropout, augmentation from the generator), then resumed.
    stopped = fit(BrightnessRegression(), _config(tmp_path / "split", max_steps=5))
    assert stopped == {"step": 5, "epoch": 0, "stopped_early": True}
    fit(BrightnessRegression(), _config(tmp_path / "split"), resume=True)
    a = torch.load(tmp_path / "whole" / CHECKPOINT, weights_only=True)
    b = torch.load(tmp_path / "split" / CHECKPOINT, weights_only=True)
    assert a["state"]["step"] == b["state"]["step"] == 12
    for part in ("model", "ema"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
