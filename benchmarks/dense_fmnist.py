"""Issues 16 and 17, bar 3: SSDLite and LR-ASPP on MobileNetV3-Small, ours beside torchvision's, on FMNIST canvases.

One command, on 2 quiet cores (resumable: run it again with the same --out to continue):

    PYTHONPATH=src python benchmarks/dense_fmnist.py --out runs/dense_fmnist                 # both tasks
    PYTHONPATH=src python benchmarks/dense_fmnist.py --out runs/dense_fmnist --task detection

1. **Pretraining** (shared): ``mobilenet_v3_small_100`` with the reduced tail (``reduced_tail=true``,
   the detectors' and LR-ASPP's backbone), 3-channel Fashion-MNIST at 64x64, recipe ``backbone`` (each
   item pasted at a random 24-64 px, its sizes on the canvases; ``--pretrain-recipe main``: full-frame);
2. **ours**: ``mobilenets train --model ssdlite_mobilenet_v3_small_100 --data fmnist-det
   --init-backbone PRETRAIN`` (recipe ``detection``), and ``lraspp_mobilenet_v3_small_100`` (the paper's
   flavour) on ``fmnist-seg`` (recipe ``segmentation``);
3. **torchvision's components**: ``SSD`` + ``SSDLiteHead`` on ``mobilenet_v3_small(reduced_tail=True)``
   (its SSDLite recipe: 6 boxes per location, softmax with 3:1 hard negatives) and ``LRASPP`` on
   ``mobilenet_v3_small(dilated=True, reduced_tail=True)``, their backbones loaded with the same
   pretrained weights, trained by the same engine: the same canvases in the same order, the same
   recipe, steps, normalization and evaluation. All runs in channels-last memory (1.5x faster SSDLite
   training steps on this CPU; ``--no-channels-last`` to compare).

Prints, per task, the wall time of each part, mAP@[.5:.95] / mAP50 / mAP75 or mIoU (11 classes,
background included) and pixel accuracy, at the best and at the final epoch, and the CPU. With
``--seeds 0 1 2`` each side trains once per seed from the same pretraining, and the final figures' mean
and spread follow the table: one run per side cannot order two heads that end within a point.
The 30-minute bar counts pretraining plus our run.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from functools import partial
from pathlib import Path

import torch
import torchvision
from torch import nn

from mobilenets.commands.train import model_option
from mobilenets.deploy.peak import cpu_features
from mobilenets.io import load_model
from mobilenets.tasks.coco_map import coco_map
from mobilenets.tasks.detection.task import DetectionTask
from mobilenets.tasks.segmentation import SegmentationTask
from mobilenets.training import TrainConfig, train
from mobilenets.training.checkpoint import BEST_DIR, is_run_dir
from mobilenets.training.engine import fit

BACKBONE = "mobilenet_v3_small_100"
MODELS = {"detection": ("ssdlite_mobilenet_v3_small_100", "fmnist-det"),
          "segmentation": ("lraspp_mobilenet_v3_small_100", "fmnist-seg")}  # fmt: skip


# --- torchvision's models, shaped for our engine ------------------------------------------------


def torchvision_backbone(pretrained_dir: Path, dilated: bool = False) -> nn.Module:
    """torchvision's ``mobilenet_v3_small(reduced_tail=True)`` with our pretrained classifier's backbone weights."""
    from mobilenets.convert import from_torchvision, resolve

    ours = load_model(pretrained_dir)
    norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
    theirs = torchvision.models.mobilenet_v3_small(norm_layer=norm, reduced_tail=True, dilated=dilated)
    state, mine = theirs.state_dict(), ours.state_dict()
    target = resolve("torchvision", "mobilenet_v3_small")
    copies = [c for c in from_torchvision.plan(ours, target, set(state)) if c.source.startswith("features.")]
    for c in copies:  # MobileNetV3's tensors keep their layout: only names differ
        if c.ours in mine:
            state[c.source] = mine[c.ours]
    theirs.load_state_dict(state)
    copied = sum(c.ours in mine for c in copies)
    logging.getLogger(__name__).info("torchvision backbone: %d of %d feature tensors from %s", copied,
                                     sum(k.startswith("features.") for k in state), pretrained_dir)  # fmt: skip
    return theirs


class TorchvisionSSDLite(nn.Module):
    """torchvision's SSD + SSDLiteHead on its V3-Small+; training-mode forward passes the images to the loss."""

    task = "detection"

    def __init__(self, pretrained_dir: Path, num_classes: int, size: int):
        super().__init__()
        from torchvision.models.detection import _utils as det_utils
        from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
        from torchvision.models.detection.ssd import SSD
        from torchvision.models.detection.ssdlite import SSDLiteHead, _mobilenet_extractor

        norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
        backbone = _mobilenet_extractor(torchvision_backbone(pretrained_dir), 6, norm)
        anchors = DefaultBoxGenerator([[2, 3] for _ in range(6)], min_ratio=0.2, max_ratio=0.95)
        channels = det_utils.retrieve_out_channels(backbone, (size, size))
        head = SSDLiteHead(channels, anchors.num_anchors_per_location(), num_classes, norm)
        # Our task normalizes the images already: torchvision's transform only checks the size.
        self.ssd = SSD(backbone, anchors, (size, size), num_classes, head=head, image_mean=[0.0] * 3,
                       image_std=[1.0] * 3, score_thresh=0.001, nms_thresh=0.55, detections_per_img=300,
                       topk_candidates=300)  # fmt: skip
        self.in_chans = 3

    def forward(self, images):
        return images if self.training else self.ssd(list(images))


class TorchvisionLRASPP(nn.Module):
    """torchvision's LRASPP on ``mobilenet_v3_small(dilated=True, reduced_tail=True)``: logits at the input size."""

    task = "segmentation"

    def __init__(self, pretrained_dir: Path, num_classes: int):
        super().__init__()
        from torchvision.models.segmentation.lraspp import _lraspp_mobilenetv3

        self.lraspp = _lraspp_mobilenetv3(torchvision_backbone(pretrained_dir, dilated=True), num_classes)
        self.in_chans = 3

    def forward(self, images):
        return self.lraspp(images)["out"]


class _PeerTask:
    """What a torchvision model needs from our dense tasks: its own model, loss, evaluation and files."""

    def __init__(self, pretrained_dir: Path):
        super().__init__()
        self.pretrained_dir = pretrained_dir

    def setup(self, config, recipe, *, run_dir, resume):
        from dataclasses import replace

        model = super().setup(replace(config, init_backbone=None), recipe, run_dir=run_dir, resume=resume)
        pre = load_model(self.pretrained_dir).preprocessing  # the same normalization as ours
        self.mean, self.std = tuple(pre.mean), tuple(pre.std)
        return model

    def save_model(self, model, directory, metadata):
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), directory / "model.pt")

    def report(self, out, best_dir, *, config, recipe, state, wall_seconds):
        best = state.history[state.best_epoch - 1] if state.best_epoch else {}
        summary = {"best_epoch": state.best_epoch, "best": best, "final": state.history[-1],
                   "train_seconds": state.train_seconds, "steps": state.step}  # fmt: skip
        (out / "report.json").write_text(json.dumps(summary, indent=1, default=float) + "\n")
        return summary


class TorchvisionDetectionTask(_PeerTask, DetectionTask):
    def build(self, config, data):
        self.model = TorchvisionSSDLite(self.pretrained_dir, data.num_classes, data.resolution)
        return self.model

    def loss(self, outputs, targets, recipe):
        losses = self.model.ssd(list(outputs), targets)
        n = len(targets)
        return sum(losses.values()), {name: value.item() * n for name, value in losses.items()}

    @torch.no_grad()
    def predictions(self, model, *, device, batch_size, workers):
        model.eval()
        preds, truth = [], []
        for x, targets, _ in self.val_batches(batch_size, workers):
            preds += [{k: v.cpu() for k, v in p.items()} for p in model(x.to(device))]
            truth += targets
        return preds, truth, []

    def evaluate(self, model, *, device, channels_last, bf16, workers, batch_size):
        preds, truth, _ = self.predictions(model, device=device, batch_size=min(batch_size, 64), workers=workers)
        result = coco_map(preds, truth, self.data.labels)
        return {"map": result["map"], "map50": result["map50"], "map75": result["map75"]}


class TorchvisionSegmentationTask(_PeerTask, SegmentationTask):
    def build(self, config, data):
        return TorchvisionLRASPP(self.pretrained_dir, data.num_classes)


# --- the benchmark ------------------------------------------------------------------------------


def _history(run: Path) -> list[dict]:
    import csv

    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _train_timed(run: Path, fn) -> None:
    """Run ``fn`` (a resumable training into ``run``) unless it finished; add its wall time to run/wall.json."""
    if (run / "report.json").is_file():
        return
    wall = run / "wall.json"
    before = json.loads(wall.read_text())["seconds"] if wall.is_file() else 0.0
    started = time.time()
    fn()
    wall.write_text(json.dumps({"seconds": before + time.time() - started}) + "\n")


def _wall(run: Path) -> float:
    return json.loads((run / "wall.json").read_text())["seconds"] if (run / "wall.json").is_file() else 0.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/dense_fmnist")
    p.add_argument("--task", default="both", choices=["detection", "segmentation", "both"])
    p.add_argument("--pretrain-epochs", type=int, default=2)
    p.add_argument("--pretrain-resolution", type=int, default=64)
    p.add_argument("--pretrain-recipe", default="backbone")
    for task in MODELS:
        p.add_argument(
            f"--{task}-option",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=f"a builder option for our {task} model (e.g. preset=torchvision); repeatable",
        )
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    p.add_argument("--detection-epochs", type=int, default=12)
    p.add_argument("--segmentation-epochs", type=int, default=10)
    p.add_argument("--who", default="both", choices=["ours", "torchvision", "both"], help="which runs to train")
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="one run per side per seed (head initialisation, canvas order, augmentation; the "
                        "pretraining is shared); the table adds each side's mean and spread")  # fmt: skip
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads (default: one per core); 1 lets an untimed run share the machine")  # fmt: skip
    p.add_argument("--train-limit", type=int, default=0, help="(smoke runs only)")
    p.add_argument("--val-limit", type=int, default=0, help="(smoke runs only)")
    p.add_argument("--pretrain-limit", type=int, default=0, help="(smoke runs only)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(args.out)
    common = dict(tensorboard=False, progress=False, workers=2, threads=args.threads, channels_last=args.channels_last)

    pretrain = out / "pretrain"
    config = TrainConfig(model=BACKBONE, output=str(pretrain), data="fashion-mnist", in_chans=3,
                         resolution=args.pretrain_resolution, model_options={"reduced_tail": True},
                         recipe=args.pretrain_recipe, epochs=args.pretrain_epochs, train_limit=args.pretrain_limit,
                         **common)  # fmt: skip
    _train_timed(pretrain, lambda: train(config, resume=is_run_dir(pretrain)))
    pretrained = pretrain / BEST_DIR
    pretrain_top1 = json.loads((pretrain / "report.json").read_text()).get("top1")
    whos = ["ours", "torchvision"] if args.who == "both" else [args.who]

    tasks = ["detection", "segmentation"] if args.task == "both" else [args.task]
    results = {}
    for task in tasks:
        model, data = MODELS[task]
        epochs = args.detection_epochs if task == "detection" else args.segmentation_epochs
        config = dict(model=model, data=data, epochs=epochs, train_limit=args.train_limit, val_limit=args.val_limit,
                      **common)  # fmt: skip
        options = dict(model_option(o) for o in getattr(args, f"{task}_option"))
        for seed in args.seeds:
            suffix = f"_seed{seed}" if seed else ""  # seed 0 keeps the run names of earlier rounds
            runs = {who: out / f"{who}_{task}{suffix}" for who in ("ours", "torchvision")}
            if "ours" in whos:
                cfg = TrainConfig(output=str(runs["ours"]), init_backbone=str(pretrain), model_options=options,
                                  seed=seed, **config)  # fmt: skip
                _train_timed(runs["ours"], lambda cfg=cfg, run=runs["ours"]: train(cfg, resume=is_run_dir(run)))
            if "torchvision" in whos:
                peer = (TorchvisionDetectionTask if task == "detection" else TorchvisionSegmentationTask)(pretrained)
                cfg = TrainConfig(output=str(runs["torchvision"]), init_backbone=str(pretrain), seed=seed, **config)
                run = runs["torchvision"]
                _train_timed(run, lambda peer=peer, cfg=cfg, run=run: fit(peer, cfg, resume=is_run_dir(run)))
            results.setdefault(task, []).extend((who, seed, runs[who]) for who in whos)

    print(f"\ncpu: {cpu_features().summary()}; torch {torch.__version__}, torchvision {torchvision.__version__}")
    print(f"pretraining: {BACKBONE} (reduced tail) at {args.pretrain_resolution}x{args.pretrain_resolution}, "
          f"{args.pretrain_epochs} epochs of recipe {args.pretrain_recipe}: top-1 {pretrain_top1}% on Fashion-MNIST "
          f"test (full-frame items), {_wall(pretrain) / 60:.1f} min")  # fmt: skip
    for task, rows in results.items():
        keys = ("val_map", "val_map50", "val_map75") if task == "detection" else ("val_miou", "val_pixel_accuracy")
        print(f"\n{task}: {MODELS[task][0]} vs torchvision's components, {MODELS[task][1]}")
        print("| run | seed | epochs | wall min (with pretraining) | " + " | ".join(f"best {k[4:]}" for k in keys)
              + " | " + " | ".join(f"final {k[4:]}" for k in keys) + " |")  # fmt: skip
        print("|---" * (4 + 2 * len(keys)) + "|")
        finals = {}
        for who, seed, run in rows:
            history = _history(run)
            best = max(history, key=lambda r: float(r[keys[0]]))
            wall = _wall(run)
            finals.setdefault(who, []).append(float(history[-1][keys[0]]))
            print(f"| {who} | {seed} | {len(history)} | {wall / 60:.1f} ({(wall + _wall(pretrain)) / 60:.1f}) | "
                  + " | ".join(f"{float(best[k]):.4f}" for k in keys) + " | "
                  + " | ".join(f"{float(history[-1][k]):.4f}" for k in keys) + " |")  # fmt: skip
        if len(args.seeds) > 1:
            for who, values in finals.items():
                print(
                    f"{who}: final {keys[0][4:]} over {len(values)} seeds: mean {statistics.mean(values):.4f}, "
                    f"std {statistics.stdev(values):.4f}, min {min(values):.4f}, max {max(values):.4f}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
