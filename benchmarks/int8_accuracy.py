"""INT8 accuracy bar: train one small model per family on Fashion-MNIST briefly, quantize, evaluate.

Bar (issue 5): INT8 loses at most 1 point of top-1 for every family. For MobileNetV3 it also
compares the keep-float policies (nothing / SE sub-graphs / SE + first conv + classifier) and
calibration methods, with latency in the same runtime.

Training is the minimum needed to have a real classifier (Adam, a few epochs at 32x32, BN
statistics re-estimated at the end); `mobilenets train` is the real training path.

    PYTHONPATH=src python benchmarks/int8_accuracy.py                 # ~10 min on 2 shared cores
    PYTHONPATH=src python benchmarks/int8_accuracy.py --workdir /tmp/fmnist   # keeps the trained model dirs
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from mobilenets import Preprocessing, create_model, load_model, save_model
from mobilenets.data.calibration import load_labelled_images
from mobilenets.deploy.quantize import quantize_model

DATA = Path("/usr/share/datasets/fashion-mnist")
LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
PRE = Preprocessing((32, 32), 32, channel_order="L", mean=(0.286,), std=(0.353,))
MODELS = ["mobilenet_v1_050", "mobilenet_v2_050", "mobilenet_v3_small_100", "mobilenet_v3_large_075",
          "shufflenet_v1_g3_050"]  # fmt: skip
# (keep_float, calibration method) tried for every model; the first is the default of `mobilenets quantize`.
V3_POLICIES = [("auto", "minmax"), ("none", "minmax"), ("se+ends", "minmax"), ("auto", "percentile")]


def train(name: str, images: torch.Tensor, labels: torch.Tensor, epochs: int, seed: int = 0):
    torch.manual_seed(seed)
    model = create_model(name, num_classes=10, in_chans=1)
    steps = epochs * (len(images) // 128)
    opt = torch.optim.AdamW(model.parameters(), 2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 4e-3, total_steps=steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(images))
        for i in range(0, len(images) - 127, 128):
            idx = order[i : i + 128]
            x = images[idx]
            flip = torch.rand(len(idx)) < 0.5
            x[flip] = x[flip].flip(-1)
            opt.zero_grad()
            F.cross_entropy(model(x), labels[idx], label_smoothing=0.05).backward()
            opt.step()
            sched.step()
    # Re-estimate BN statistics on clean training images (a short run leaves them behind the weights).
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        for i in range(0, min(len(images), 10000), 500):
            model(images[i : i + 500])
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--train-images", type=int, default=30000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--calibration", type=int, default=300)
    parser.add_argument("--eval-images", type=int, default=10000)
    parser.add_argument("--runtime", default="onnxruntime")
    parser.add_argument("--workdir", help="keep trained model directories here (reused when present)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(2)
    started = time.time()
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="int8-accuracy-"))
    train_data = None
    rows = []
    for name in args.models.split(","):
        model_dir = work / name
        if (model_dir / "config.json").is_file():
            model = load_model(model_dir)
        else:
            if train_data is None:
                data = load_labelled_images(DATA, PRE, split="train", limit=args.train_images)
                train_data = torch.from_numpy(data.images), torch.from_numpy(data.labels)
            model = train(name, *train_data, args.epochs)
            save_model(model, model_dir, labels=LABELS, preprocessing=PRE)
            model = load_model(model_dir)  # carries the preprocessing that quantize_model reads
            print(f"[{time.time() - started:.0f}s] trained {name}", flush=True)
        policies = V3_POLICIES if "v3" in name else [("auto", "minmax")]
        for keep_float, method in policies:
            report = quantize_model(model, work / f"{name}.{keep_float}.{method}.int8.onnx", DATA,
                                    calibration=args.calibration, eval_images=args.eval_images,
                                    keep_float=keep_float, method=method, runtime=args.runtime)  # fmt: skip
            rows.append((name, report))
            print(f"[{time.time() - started:.0f}s] {name} {keep_float}/{method}: {report.top1_fp32:.2f} -> "
                  f"{report.top1_int8:.2f}", flush=True)  # fmt: skip
    print(
        f"\n## INT8 on Fashion-MNIST ({args.eval_images} test images, 32x32, {args.runtime}, 1 thread; "
        f"{args.calibration} calibration images from the train split)\n"
    )
    print(
        "| model | keep float | calibration | float nodes | top-1 fp32 | top-1 int8 | drop (<= 1) | fp32 ms |"
        " int8 ms | speed-up |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in rows:
        print(
            f"| {name} | {r.keep_float} | {r.method} | {r.float_nodes} | {r.top1_fp32:.2f} | {r.top1_int8:.2f} | "
            f"{r.top1_drop:+.2f} | {r.latency_fp32_ms:.3f} | {r.latency_int8_ms:.3f} | {r.speedup:.2f}x |"
        )
    print(f"\nmodel directories: {work}; whole run {time.time() - started:.0f}s")


if __name__ == "__main__":
    main()
