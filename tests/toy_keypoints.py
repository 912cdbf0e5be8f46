"""A fourth task written as new files only (this module): keypoint heatmaps on generated dot images.

It registers a model and a task through the public tables and nothing else; tests/test_new_task.py runs it
through the command line. Nothing in mobilenets names it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mobilenets.io import atomic_write_text, load_model, save_model
from mobilenets.preprocessing import Preprocessing, read_converted, read_user_image, to_model_mode
from mobilenets.registry import register
from mobilenets.tasks import register_task
from mobilenets.training import Task
from mobilenets.training.checkpoint import BEST_DIR

SIZE, STRIDE = 32, 4  # 32 x 32 images, heatmaps at 8 x 8
PRE = Preprocessing((SIZE, SIZE), 0, channel_order="L", mean=(0.5,), std=(0.5,))


def toy_keypoint_net(num_classes: int = 1, in_chans: int = 1, width: int = 16) -> nn.Module:
    """Two stride-2 convolutions and a 1x1 to ``num_classes`` heatmaps (one per keypoint)."""
    return KeypointNet(num_classes, in_chans, width)


class KeypointNet(nn.Module):
    family = "toy_keypoint_net"

    def __init__(self, num_classes: int, in_chans: int, width: int):
        super().__init__()
        self.num_classes, self.in_chans, self.options = (
            num_classes,
            in_chans,
            {"num_classes": num_classes, "in_chans": in_chans, "width": width},
        )
        self.body = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, 2, 1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, 2, 1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        self.head = nn.Conv2d(width, num_classes, 1)

    def forward(self, x):
        return self.head(self.body(x))

    @property
    def config(self) -> dict:
        return {"name": self.name, "family": self.family, "options": dict(self.options)}


register("toy_keypoints", toy_keypoint_net, {}, description="toy keypoint heatmaps", task="keypoints")


def dots(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` dark 32 x 32 images (uint8, N x 1 x H x W) with one bright 3 x 3 dot each, and the dots' (x, y)."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.randint(2, SIZE - 2, (count, 2), generator=g)
    images = torch.randint(0, 40, (count, 1, SIZE, SIZE), generator=g, dtype=torch.uint8)
    for image, (x, y) in zip(images, xy.tolist(), strict=True):
        image[0, y - 1 : y + 2, x - 1 : x + 2] = 255
    return images, xy


def normalized(images: torch.Tensor) -> torch.Tensor:
    return (images.float() / 255 - 0.5) / 0.5


def heatmap_targets(xy: torch.Tensor) -> torch.Tensor:
    """The cell of the heatmap each dot falls in, as a class index over the 8 x 8 cells."""
    cells = SIZE // STRIDE
    return (xy[:, 1] // STRIDE) * cells + xy[:, 0] // STRIDE


def locate(heatmaps: torch.Tensor) -> torch.Tensor:
    """(x, y) at the centre of each heatmap's strongest cell, in 32 x 32 input pixels."""
    cells = heatmaps.shape[-1]
    best = heatmaps.flatten(1).argmax(1)
    return torch.stack([best % cells, best // cells], 1).float() * STRIDE + STRIDE / 2


def error(model: nn.Module, images: torch.Tensor, xy: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        found = locate(model(normalized(images))[:, 0])
    return float((found - xy.float()).norm(dim=1).mean())


@register_task
class KeypointTask(Task):
    name = "keypoints"
    best_metric = "neg_error"

    def setup(self, config, recipe, *, run_dir, resume):
        if config.data != "dots":
            raise ValueError(f"--data {config.data}: the keypoints task reads 'dots'")
        self.train_images, self.train_xy = dots(256, seed=1)
        self.val_images, self.val_xy = dots(64, seed=2)
        model = toy_keypoint_net()
        model.name, model.labels, model.preprocessing = config.model, ["dot"], PRE
        return model

    def describe(self):
        return f"dots: {len(self.train_xy)} train / {len(self.val_xy)} val"

    def record(self):
        return {"labels": ["dot"]}

    def train_size(self):
        return len(self.train_xy)

    def train_batches(self, order, batch_size, *, generator, workers, shard, start, loader_seed):
        for i in range(start * batch_size, len(order), batch_size):
            idx = order[i : i + batch_size]
            yield normalized(self.train_images[idx]), heatmap_targets(self.train_xy[idx]), 0

    def loss(self, outputs, targets, recipe):
        return F.cross_entropy(outputs[:, 0].flatten(1), targets), {}

    def evaluate(self, model, *, device, channels_last, bf16, workers, batch_size):
        return {"neg_error": -error(model, self.val_images, self.val_xy)}

    def save_model(self, model, directory, metadata):
        save_model(model, directory, labels=["dot"], preprocessing=PRE, metadata=metadata, overwrite=True)

    def report(self, out, best_dir, *, config, recipe, state, wall_seconds):
        px = error(load_model(best_dir), self.val_images, self.val_xy)
        params = sum(p.numel() for p in load_model(best_dir).parameters())
        summary = {"model": config.model, "task": self.name, "error_px": px, "best_epoch": state.best_epoch,
                   "params": params, "madds": 0}  # fmt: skip
        atomic_write_text(out / "report.json", json.dumps(summary) + "\n")
        return summary

    @classmethod
    def evaluate_saved(cls, path, data, *, limit, batch_size, workers, device, tta):
        path = Path(path)
        model_dir = path / BEST_DIR if (path / BEST_DIR).is_dir() else path
        images, xy = dots(64, seed=2)
        return {
            "model": str(model_dir),
            "data": "dots",
            "images": len(xy),
            "error_px": error(load_model(model_dir), images, xy),
        }

    @classmethod
    def headline(cls, summary):
        return f"val error {summary['error_px']:.2f} px"

    @classmethod
    def predict(cls, model, paths, device, *, topk, min_score):
        images = [read_converted(p, lambda image: to_model_mode(image, "L")) for p in paths]
        from torchvision.transforms.functional import pil_to_tensor, resize

        batch = torch.stack([resize(pil_to_tensor(image), [SIZE, SIZE], antialias=True) for image in images])
        with torch.no_grad():
            found = locate(model(normalized(batch))[:, 0])
        for path, (x, y) in zip(paths, found.tolist(), strict=True):

            def draw(path=path, x=x, y=y):
                picture = pil_to_tensor(to_model_mode(read_user_image(path), "RGB")).clone()
                picture[:, max(0, int(y) - 1) : int(y) + 2, max(0, int(x) - 1) : int(x) + 2] = torch.tensor(
                    [255, 0, 0], dtype=torch.uint8
                ).view(3, 1, 1)
                return picture

            yield {"image": str(path), "keypoints": [[x, y]]}, draw
