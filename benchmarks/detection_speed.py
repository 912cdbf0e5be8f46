"""End-to-end latency of SSDLite MobileNetV3-Large: ours in every runtime beside torchvision's, interleaved.

Issue 16, bar 4: batch 1, 320x320, 1 thread, a normalized image tensor in and final boxes out
(decoding, score threshold, per-class top-k, NMS). Rows:

- torchvision's ``ssdlite320_mobilenet_v3_large`` called as ``model([image])`` (its transform,
  forward and post-processing), eager; and through ONNX Runtime / OpenVINO where it exports;
- ours, ``ssdlite_mobilenet_v3_large_100`` (the paper's V3-Large+ detector, ``tf`` preset), end to end
  (``with_postprocess()``) in eager PyTorch, after ``optimize()``, and exported with the NMS inside
  the graph to ONNX Runtime and OpenVINO;
- ours with torchvision's weights (``ssdlite320_mobilenet_v3_large`` converted), the same model as
  torchvision's row, in the same runtimes, with the detections checked equal to torchvision's.

Weights are re-drawn with Kaiming's init so that scores vary as with trained weights (thousands of
(box, class) pairs pass the 0.001 threshold, so post-processing works near its caps). Every row is
timed round-robin in one process (``deploy/timing.py``): machine noise falls on all alike, so
compare the ratios; the CPU is printed.

    PYTHONPATH=src python benchmarks/detection_speed.py                # ~4 min, most of it exporting
    PYTHONPATH=src python benchmarks/detection_speed.py --threads 2 --rounds 7
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torchvision

import mobilenets
from mobilenets.convert import convert_checkpoint
from mobilenets.deploy.exporter import export_onnx
from mobilenets.deploy.optimize import optimize
from mobilenets.deploy.peak import cpu_features
from mobilenets.deploy.runtimes import ort_runner, ov_runner
from mobilenets.deploy.timing import summarize, time_interleaved

SIZE = 320
TORCHVISION = "torchvision ssdlite320: model([image])"


def _kaiming(model: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    for m in model.modules():  # N(0, 0.03) fades to constant scores by the heads; trained weights do not
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return model.eval()


def build(tmp: Path) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    """torchvision's model, ours with its weights, and our paper-preset V3-Large+ detector."""
    torch.manual_seed(0)
    theirs = _kaiming(torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None))
    path = tmp / "ssdlite320_mobilenet_v3_large.pth"
    torch.save(theirs.state_dict(), path)
    converted = convert_checkpoint(path, "torchvision", "ssdlite320_mobilenet_v3_large").eval()
    paper = _kaiming(mobilenets.create_model("ssdlite_mobilenet_v3_large_100"))
    return theirs, converted, paper


class _TorchvisionOnTensor(torch.nn.Module):
    """torchvision's detector on a (1, 3, H, W) tensor in [0, 1], its detections as three tensors."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(list(x))[0]
        return out["boxes"], out["scores"], out["labels"]


def _export_torchvision(theirs, path: Path, image: np.ndarray) -> str | None:
    """Export torchvision's detector to ONNX (either exporter); None if neither can, else the exporter used."""
    wrapper = _TorchvisionOnTensor(theirs).eval()
    example = torch.from_numpy(image)
    for dynamo in (True, False):
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                names = dict(input_names=["input"], output_names=["boxes", "scores", "labels"])
                program = torch.onnx.export(wrapper, (example,), str(path), dynamo=dynamo, opset_version=20, **names)
                if dynamo:
                    program.save(str(path))
            ort_runner(path, all_outputs=True)(image)
            return "dynamo" if dynamo else "torchscript"
        except Exception as err:  # noqa: BLE001 - report any exporter failure and go on
            print(f"torchvision's model does not export (dynamo={dynamo}): {type(err).__name__}: "
                  f"{str(err).splitlines()[0][:160] if str(err) else ''}")  # fmt: skip
    return None


def _on(runner, x, _ignored):
    return runner(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--round-seconds", type=float, default=0.5)
    args = parser.parse_args()
    for name in ("onnx_ir", "onnxscript", "torch.onnx", "torch.export", "torch._dynamo", "torch.fx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    image = np.random.default_rng(0).random((1, 3, SIZE, SIZE), dtype=np.float32)  # in [0, 1]
    normalized = (image - 0.5) / 0.5  # what both models' own normalization does
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        theirs, converted, paper = build(tmp)
        runners = {}

        def eager(module, x_of=torch.from_numpy):
            def run(x):
                with torch.inference_mode():
                    return module(x_of(x))

            return run

        runners[TORCHVISION] = eager(theirs, lambda x: list(torch.from_numpy(x)))
        exporter = _export_torchvision(theirs, tmp / "torchvision.onnx", image)
        if exporter:
            runners[f"torchvision ssdlite320: ONNX Runtime ({exporter} export)"] = ort_runner(tmp / "torchvision.onnx",
                                                                                              args.threads)  # fmt: skip
            runners[f"torchvision ssdlite320: OpenVINO ({exporter} export)"] = ov_runner(tmp / "torchvision.onnx",
                                                                                         args.threads)  # fmt: skip
        ours_models = (("ours, torchvision's weights", converted), ("ours ssdlite_mobilenet_v3_large_100", paper))
        for label, model in ours_models:
            end_to_end = model.with_postprocess()
            runners[f"{label}: eager"] = eager(end_to_end)
            runners[f"{label}: optimize()"] = eager(optimize(end_to_end))
            path = tmp / f"{model.name}.onnx"
            # He-initialised weights give logits in the hundreds: softmax scores differ by ~1e-4 after BN folding.
            export_onnx(model, path, resolution=SIZE, tolerance=1e-3)
            runners[f"{label}: ONNX Runtime"] = ort_runner(path, args.threads)
            runners[f"{label}: OpenVINO"] = ov_runner(path, args.threads)

        # The converted model gives torchvision's detections (normalization is inside theirs, outside ours).
        with torch.inference_mode():
            ref = theirs(list(torch.from_numpy(image)))[0]
            ours = converted.with_postprocess()(torch.from_numpy(normalized))
        n = int(ours.num_detections[0])
        same = n == len(ref["boxes"]) and torch.allclose(ours.boxes[0, :n], ref["boxes"], atol=1e-3)
        same = same and torch.equal(ours.labels[0, :n], ref["labels"])
        inputs = {k: (image if k.startswith("torchvision") else normalized) for k in runners}
        fixed = {k: partial(_on, r, inputs[k]) for k, r in runners.items()}  # each row on its own input
        times = time_interleaved(fixed, image, warmup=5, rounds=args.rounds, round_seconds=args.round_seconds)
    base = summarize(times[TORCHVISION])[0]
    print(f"\nSSDLite MobileNetV3-Large end to end, batch 1, {SIZE}x{SIZE}, {args.threads} thread(s), fp32")
    print(f"cpu: {cpu_features().summary()}")
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}; detections of ours with torchvision's "
          f"weights equal torchvision's: {same} ({n} boxes)\n")  # fmt: skip
    print(f"| {'path':<58} | median ms | p90 ms | speed-up vs torchvision eager |")
    print(f"|{'-' * 60}|---|---|---|")
    for key, samples in times.items():
        median, p90 = summarize(samples)
        print(f"| {key:<58} | {median:.2f} | {p90:.2f} | {base / median:.2f}x |")


if __name__ == "__main__":
    main()
