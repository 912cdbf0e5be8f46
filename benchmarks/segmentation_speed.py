"""CPU latency of LR-ASPP: ours (paper flavour, V3-Large RF2, 19 classes) beside torchvision's, in each runtime.

Issue 17, bar 4. P-V3 Table 7 times the half-resolution Cityscapes input (512x1024) on one Pixel 3
core; here: the same input, batch 1, 1 thread, every row timed round-robin in this one process so
machine noise falls on all alike (``deploy.timing.time_interleaved``). Rows: eager PyTorch, ours
after ``optimize()``, and ONNX Runtime / OpenVINO for ours (``mobilenets.deploy.export_onnx``) and for
torchvision's model (``torch.onnx.export``, the same exporter). Weights are random (latency does not
depend on them). torchvision's model is the full-tail, global-pooling flavour with 21 classes; ours in
its torchvision flavour is timed too, as the like-for-like check.

    PYTHONPATH=src python benchmarks/segmentation_speed.py            # ~3 min on a quiet core
    PYTHONPATH=src python benchmarks/segmentation_speed.py --resolution 1024x2048 --rounds 3
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import warnings
from pathlib import Path

import torch
import torchvision

from mobilenets import create_model, profile
from mobilenets.complexity import parse_resolution
from mobilenets.deploy.exporter import export_onnx
from mobilenets.deploy.optimize import optimize
from mobilenets.deploy.peak import cpu_features
from mobilenets.deploy.runtimes import ort_runner, ov_runner
from mobilenets.deploy.timing import summarize, time_interleaved


def _no_grad(model, x):
    with torch.inference_mode():
        return model(x)


def _numpy(runner):
    return lambda x: runner(x.numpy())


class _Logits(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)["out"]


def _export_torchvision(model, path: Path, x: torch.Tensor) -> None:
    """torchvision's model through the same exporter as ours (dynamo, opset 20, static shape)."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(_Logits(model).eval(), (x,), dynamo=True, opset_version=20,
                                    input_names=["input"], output_names=["logits"], optimize=True)  # fmt: skip
    program.save(str(path))


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
    paper, theirs_key = "ours lraspp_mobilenet_v3_large_100 (paper)", "torchvision lraspp_mobilenet_v3_large"
    for name in ("onnx_ir", "onnxscript", "torch.onnx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    runners = {}
    x = torch.randn(1, 3, h, w)
    with tempfile.TemporaryDirectory() as tmp:
        for key, model in models.items():
            model.eval()
            unwrap = key.startswith("torchvision")

            def run(x, model=model, unwrap=unwrap):
                with torch.inference_mode():
                    out = model(x)
                return out["out"] if unwrap else out

            runners[f"{key}: eager"] = run
        optimized = optimize(models[paper])
        runners[f"{paper}: optimize()"] = lambda x: _no_grad(optimized, x)
        onnx_files = {paper: Path(tmp) / "paper.onnx", theirs_key: Path(tmp) / "torchvision.onnx"}
        export_onnx(models[paper], onnx_files[paper], resolution=(h, w))
        _export_torchvision(models[theirs_key], onnx_files[theirs_key], x)
        for key, path in onnx_files.items():
            runners[f"{key}: ONNX Runtime"] = _numpy(ort_runner(path, args.threads))
            runners[f"{key}: OpenVINO"] = _numpy(ov_runner(path, args.threads))
        times = time_interleaved(runners, x, warmup=3, rounds=args.rounds, round_seconds=args.round_seconds,
                                 min_calls=3)  # fmt: skip

    ours_tv = models["ours lraspp_mobilenet_v3_large (torchvision flavour)"]
    counts = {
        key: (sum(p.numel() for p in m.parameters()), profile(ours_tv if key.startswith("torchvision") else m, (h, w)))
        for key, m in models.items()
    }  # torchvision's MAdds: those of our torchvision flavour, which equals it weight for weight
    print(f"CPU: {cpu_features().summary()}; torch {torch.__version__}, {args.threads} thread(s), "
          f"input 1x3x{h}x{w}, fp32")  # fmt: skip
    for key, (params, prof) in counts.items():
        print(f"  {key}: {params:,} params, {prof.madds / 1e9:.2f}B MAdds")
    base = summarize(times[f"{theirs_key}: eager"])[0]
    print(f"\n| {'model: runtime':<70} | median ms | p90 ms | speed-up vs torchvision eager |")
    print(f"|{'-' * 72}|---|---|---|")
    for key, samples in times.items():
        median, p90 = summarize(samples)
        print(f"| {key:<70} | {median:.1f} | {p90:.1f} | {base / median:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
