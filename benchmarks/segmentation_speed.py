"""Eager CPU latency of LR-ASPP: ours (paper flavour, V3-Large RF2, 19 classes) beside torchvision's.

P-V3 Table 7 times the half-resolution Cityscapes input (512x1024) on one Pixel 3 core; here: the
same input, batch 1, 1 thread, eager PyTorch, every model timed round-robin in this one process so
machine noise falls on all alike (``deploy.bench.time_interleaved``). Weights are random (latency
does not depend on them). torchvision's model is the full-tail, global-pooling flavour with 21
classes; ours in its torchvision flavour is timed too, as the like-for-like check.

    PYTHONPATH=src python benchmarks/segmentation_speed.py            # ~1 min on a quiet core
    PYTHONPATH=src python benchmarks/segmentation_speed.py --resolution 1024x2048 --rounds 3
"""

from __future__ import annotations

import argparse

import torch
import torchvision

from mobilenets import create_model, profile
from mobilenets.complexity import parse_resolution
from mobilenets.deploy.bench import summarize, time_interleaved
from mobilenets.deploy.peak import cpu_features


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", default="512x1024", help="HxW (default 512x1024, P-V3 Table 7's half size)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--round-seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    h, w = parse_resolution(args.resolution)
    torch.set_num_threads(args.threads)

    models = {
        "ours lraspp_mobilenet_v3_large_100 (paper)": create_model("lraspp_mobilenet_v3_large_100"),
        "ours lraspp_mobilenet_v3_large (torchvision flavour)": create_model("lraspp_mobilenet_v3_large"),
        "torchvision lraspp_mobilenet_v3_large": torchvision.models.segmentation.lraspp_mobilenet_v3_large(
            weights=None, weights_backbone=None
        ),
    }
    runners = {}
    for key, model in models.items():
        model.eval()
        unwrap = key.startswith("torchvision")

        def run(x, model=model, unwrap=unwrap):
            with torch.inference_mode():
                out = model(x)
            return out["out"] if unwrap else out

        runners[key] = run
    x = torch.randn(1, 3, h, w)
    times = time_interleaved(runners, x, warmup=3, rounds=args.rounds, round_seconds=args.round_seconds, min_calls=3)

    ours_tv = models["ours lraspp_mobilenet_v3_large (torchvision flavour)"]
    counts = {
        key: (sum(p.numel() for p in m.parameters()), profile(ours_tv if key.startswith("torchvision") else m, (h, w)))
        for key, m in models.items()
    }  # torchvision's MAdds: those of our torchvision flavour, which equals it weight for weight
    print(f"CPU: {cpu_features().summary()}; torch {torch.__version__}, {args.threads} thread(s), "
          f"input 1x3x{h}x{w}, eager, inference_mode")  # fmt: skip
    header = f"{'model':<54} {'params':>10} {'MAdds':>8} {'median ms':>10} {'p90 ms':>8} {'calls':>6}"
    print(header)
    print("-" * len(header))
    medians = {}
    for key in models:
        median, p90 = summarize(times[key])
        medians[key] = median
        params, prof = counts[key]
        print(f"{key:<54} {params:>10,} {prof.madds / 1e9:>7.2f}B {median:>10.1f} {p90:>8.1f} {len(times[key]):>6}")
    ours = medians["ours lraspp_mobilenet_v3_large_100 (paper)"]
    theirs = medians["torchvision lraspp_mobilenet_v3_large"]
    print(f"\npaper flavour / torchvision: {ours / theirs:.2f}x the time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
