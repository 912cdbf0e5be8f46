"""Eager latency of our SSDLite beside torchvision's ssdlite320_mobilenet_v3_large, interleaved (batch 1, 320x320).

Both run the same weights (torchvision's, converted to ours): rows are our fixed-shape ``forward``
(decoding in the graph), our ``detect`` (forward + threshold + batched NMS), and torchvision's
``model([image])`` (its transform, forward and post-processing). Weights are re-drawn with Kaiming's
init so that scores vary as with trained weights; tens of thousands of (box, class) pairs pass the
0.001 threshold, so post-processing works at its cap (300 per class, 300 kept). Timed round-robin
in one process (``deploy/bench.py``), so machine noise falls on every row alike; compare the ratios.

    PYTHONPATH=src python benchmarks/detection_speed.py                # ~1 min
    PYTHONPATH=src python benchmarks/detection_speed.py --threads 2 --rounds 7
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
import torchvision

from mobilenets.convert import convert_checkpoint
from mobilenets.deploy.bench import summarize, time_interleaved
from mobilenets.deploy.peak import cpu_features

SIZE = 320


def build() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    theirs = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None).eval()
    for m in theirs.modules():  # N(0, 0.03) fades to constant scores by the heads; trained weights do not
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ssdlite320_mobilenet_v3_large.pth"
        torch.save(theirs.state_dict(), path)
        ours = convert_checkpoint(path, "torchvision", "ssdlite320_mobilenet_v3_large").eval()
    return ours, theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ours, theirs = build()
    image = np.random.default_rng(0).random((1, 3, SIZE, SIZE), dtype=np.float32)

    def our_forward(x):
        with torch.inference_mode():
            return ours((torch.from_numpy(x) - 0.5) / 0.5)

    def our_detect(x):
        with torch.inference_mode():
            return ours.detect((torch.from_numpy(x) - 0.5) / 0.5)

    def their_model(x):
        with torch.inference_mode():
            return theirs(list(torch.from_numpy(x)))

    runners = {"ours: forward (fixed-shape boxes + scores)": our_forward, "ours: detect (forward + NMS)": our_detect,
               "torchvision: model([image])": their_model}  # fmt: skip
    a, b = our_detect(image)[0], their_model(image)[0]
    same = all(torch.allclose(a[k].float(), b[k].float(), atol=1e-4) for k in a) and len(a["boxes"]) == len(b["boxes"])
    times = time_interleaved(runners, image, warmup=5, rounds=args.rounds, round_seconds=0.5)
    base = summarize(times["torchvision: model([image])"])[0]
    print(f"SSDLite MobileNetV3-Large (ssdlite320), batch 1, {SIZE}x{SIZE}, {args.threads} thread(s), eager fp32")
    print(f"cpu: {cpu_features().summary()}; torch {torch.__version__}, torchvision {torchvision.__version__}")
    with torch.inference_mode():
        scores = ours((torch.from_numpy(image) - 0.5) / 0.5).scores[0, :, 1:]
    print(
        f"(box, class) pairs above 0.001: {int((scores > 0.001).sum())}; detections per image: "
        f"{len(b['boxes'])} (ours identical: {same})\n"
    )
    print(f"{'path':<44} {'median ms':>10} {'p90 ms':>8} {'vs torchvision':>15}")
    for key, samples in times.items():
        median, p90 = summarize(samples)
        print(f"{key:<44} {median:>10.2f} {p90:>8.2f} {base / median:>14.2f}x")


if __name__ == "__main__":
    main()
