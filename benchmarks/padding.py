"""CPU latency of symmetric (default) vs TF 'SAME' padding, the mode converted TF/Keras weights need.

    PYTHONPATH=src python benchmarks/padding.py [--threads 1] [--runs 30] [--batch 1]

Prints one row per model: median forward time in ms for each padding mode at 224x224.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mobilenets import create_model

MODELS = ["mobilenet_v1_100", "mobilenet_v2_100", "mobilenet_v3_large_100", "mobilenet_v3_small_100"]


def median_ms(model: torch.nn.Module, x: torch.Tensor, runs: int) -> float:
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--resolution", type=int, default=224)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.randn(args.batch, 3, args.resolution, args.resolution)
    print(f"batch {args.batch}, {args.resolution}x{args.resolution}, {args.threads} thread(s), median of {args.runs}")
    print(f"{'model':<26}{'symmetric ms':>14}{'same ms':>10}{'same/sym':>10}")
    for name in MODELS:
        sym = median_ms(create_model(name).eval(), x, args.runs)
        same = median_ms(create_model(name, padding="same", bn_eps=1e-3).eval(), x, args.runs)
        print(f"{name:<26}{sym:>14.2f}{same:>10.2f}{same / sym:>10.2f}")


if __name__ == "__main__":
    main()
