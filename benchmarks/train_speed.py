"""Training throughput on CPU (fp32 vs channels_last vs bf16 autocast) and the figures of finished runs.

    PYTHONPATH=src python benchmarks/train_speed.py                       # throughput table
    PYTHONPATH=src python benchmarks/train_speed.py --runs /work/runs/*   # + accuracy/params/MAdds/time of runs

Images/s are for full training steps (forward, backward, SGD step) on random 1-channel batches,
the same work as a Fashion-MNIST step; and for SSDLite / LR-ASPP V3-Small on random 3-channel
128x128 batches of 32, as on the FMNIST canvases (a proxy loss on every output: the same backward).
The machine's load average is printed with the table because the figures scale with the share of
the CPU the run gets.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import mobilenets

CONFIGS = [  # (model, stem stride, input size)
    ("mobilenet_v1_025", 1, 28),
    ("mobilenet_v1_050", 1, 28),
    ("mobilenet_v1_050", 2, 32),
    ("mobilenet_v3_small_100", 1, 28),
]
DENSE = [  # (model, input size): the FMNIST canvas heads, 3 channels, batch 32 (their recipes')
    ("ssdlite_mobilenet_v3_small_100", 128),
    ("lraspp_mobilenet_v3_small_100", 128),
]
MODES = {"fp32": (False, False), "ch_last": (True, False), "bf16": (False, True), "cl+bf16": (True, True)}


def _proxy_loss(outputs) -> torch.Tensor:
    """A scalar that back-propagates through every output (a dense head's real loss costs ~5% of its step)."""
    if isinstance(outputs, torch.Tensor):
        return outputs.float().square().mean()
    return sum(o.float().square().mean() for o in outputs if isinstance(o, torch.Tensor) and o.requires_grad)


def images_per_second(
    name: str, stem_stride: int, res: int, batch: int, channels_last: bool, bf16: bool, steps: int
) -> float:
    torch.manual_seed(0)
    dense = stem_stride == 0
    options = dict(num_classes=11) if dense else dict(num_classes=10, in_chans=1, stem_stride=stem_stride)
    model = mobilenets.create_model(name, **options).train()
    x, y = torch.randn(batch, 3 if dense else 1, res, res), torch.randint(0, 10, (batch,))
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for i in range(steps + 1):
        if i == 1:  # the first step pays for allocation and kernel selection
            start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = _proxy_loss(model(x)) if dense else F.cross_entropy(model(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", nargs="*", default=[], help="run directories with report.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} threads, batch {args.batch_size}, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print(f"{'model':<24} {'stem':>4} {'res':>4} " + " ".join(f"{m:>8}" for m in MODES) + "  (train images/s)")
    for name, stride, res in CONFIGS:
        cells = [images_per_second(name, stride, res, args.batch_size, cl, bf, args.steps) for cl, bf in MODES.values()]
        print(f"{name:<24} {stride:>4} {res:>4} " + " ".join(f"{c:>8.0f}" for c in cells), flush=True)
    print(f"\n{'dense model, batch 32':<31} {'res':>4} " + " ".join(f"{m:>8}" for m in MODES) + "  (train images/s)")
    for name, res in DENSE:
        cells = [images_per_second(name, 0, res, 32, cl, bf, args.steps) for cl, bf in MODES.values()]
        print(f"{name:<31} {res:>4} " + " ".join(f"{c:>8.0f}" for c in cells), flush=True)
    if args.runs:
        print()
        print(f"{'run':<24} {'model':<18} {'ep':>3} {'top-1':>7} {'params':>9} {'MAdds':>8}  train min  wall min")
        for run in args.runs:
            report = Path(run) / "report.json"
            if not report.is_file():
                continue
            r = json.loads(report.read_text())
            print(
                f"{Path(run).name:<24} {r['model']:<18} {r['epochs']:>3} {r['top1']:>6.2f}% {r['params']:>9,} "
                f"{r['madds'] / 1e6:>7.2f}M {r['train_seconds'] / 60:>9.1f} "
                f"{r['wall_seconds_this_invocation'] / 60:>8.1f}"
            )


if __name__ == "__main__":
    main()
