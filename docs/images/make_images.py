"""The pictures in docs/images/, remade by one command (9 min on one CPU thread of a 2-core Xeon):

    PYTHONPATH=src python docs/images/make_images.py                  # all of them
    PYTHONPATH=src python docs/images/make_images.py pareto bench     # some

- ``netadapt_pareto.png``: re-plotted from ``netadapt_fmnist.json``, the figures of the run that
  docs/netadapt.md reports (its history.json is not in the repository; the JSON's note says where each
  figure comes from);
- ``fmnist-det.png``, ``fmnist-seg.png``: ``mobilenets data show`` of 8 validation canvases, true boxes / masks;
- ``detection_predictions.png``, ``segmentation_predictions.png``, ``detection_curves.png``: the report
  pictures of two *small demonstration runs* (SSDLite and LR-ASPP on MobileNetV3-Small, no pretraining,
  3000 canvases of 64 px, 6 epochs): they show what the pictures look like, not what the models reach
  (docs/training.md has the real runs);
- ``curves.png``: a 3-epoch MobileNetV1 0.25 run on 10 000 Fashion-MNIST images, scored each epoch on the
  validation images carved from the training split;
- ``bench.png``: ``mobilenets bench`` of the two shipped Fashion-MNIST models and MobileNetV3-Small 0.75,
  eager PyTorch and ONNX Runtime, 1 thread, short rounds: timings of whatever machine runs this.

Runs go to ``--runs`` (default runs/images) and are reused when their report is there.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARTS = ("pareto", "data", "detection", "segmentation", "curves", "bench")


def _train(out: Path, **options) -> Path:
    from mobilenets.training import TrainConfig, train

    if not (out / "report.json").is_file():
        train(TrainConfig(output=str(out), threads=1, workers=0, progress=False, tensorboard=False, **options))
    return out


def _curves(run: Path, metric: str, label: str, split: str, picture: Path) -> None:
    """The run's curves.png redrawn from its metrics.csv (by this code, also for a reused run), copied out."""
    from mobilenets.training.report import write_curves

    with open(run / "metrics.csv") as f:
        history = [{k: int(v) if k == "epoch" else float(v) for k, v in row.items() if v} for row in csv.DictReader(f)]
    shutil.copyfile(write_curves(run, history, metric, label, split), picture)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("parts", nargs="*", help=f"any of {', '.join(PARTS)} (default: all)")
    p.add_argument("--out", type=Path, default=HERE)
    p.add_argument("--runs", type=Path, default=Path("runs/images"))
    args = p.parse_args()
    if set(args.parts) - set(PARTS):
        p.error(f"unknown parts {sorted(set(args.parts) - set(PARTS))}: give any of {', '.join(PARTS)}")
    parts = args.parts or PARTS
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the runs' epochs, as `mobilenets train` logs
    args.out.mkdir(parents=True, exist_ok=True)
    if "pareto" in parts:
        from mobilenets.search.netadapt import plot_pareto

        plot_pareto(json.loads((HERE / "netadapt_fmnist.json").read_text()), args.out / "netadapt_pareto.png")
    if "data" in parts:
        from mobilenets.cli import main as cli

        for name in ("fmnist-det", "fmnist-seg"):
            cli(["data", "show", name, "--count", "8", "-o", str(args.out / f"{name}.png"), "--overwrite"])
    for task, model in (
        ("detection", "ssdlite_mobilenet_v3_small_100"),
        ("segmentation", "lraspp_mobilenet_v3_small_100"),
    ):
        if task in parts:
            short = task[:3]
            run = _train(args.runs / short, model=model, data=f"fmnist-{short}-64-n1to2-s24to48", epochs=6,
                         train_limit=3000, val_limit=64)  # fmt: skip
            shutil.copyfile(run / "predictions.png", args.out / f"{task}_predictions.png")
            if task == "detection":
                _curves(run, "map", "mAP@[.5:.95]", "val", args.out / "detection_curves.png")
    if "curves" in parts:
        run = _train(args.runs / "fmnist-val", model="mobilenet_v1_025", epochs=3, train_limit=10000)
        _curves(run, "top1", "top-1 (%)", "val", args.out / "curves.png")
    if "bench" in parts:
        from mobilenets.cli import main as cli
        from mobilenets.pretrained import resolve

        shipped = [str(resolve(f"{name}.fashion-mnist")) for name in ("mobilenet_v1_025", "mobilenet_v1_050")]
        cli(["bench", *shipped, "mobilenet_v3_small_075", "--resolution", "32", "--runtimes", "eager,onnxruntime",
             "--rounds", "3", "--round-seconds", "0.3", "--plot", str(args.out / "bench.png"), "--overwrite",
             "--quiet"])  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
