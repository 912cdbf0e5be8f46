"""``mobilenets convert`` (checkpoints of other libraries -> model directory) and ``mobilenets predict``."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ..convert import SOURCES

log = logging.getLogger(__name__)


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a torchvision/timm/Keras/megvii checkpoint into a model directory",
        description="Convert a checkpoint of another library into a model directory (model.safetensors + "
        "config.json with the preprocessing the weights expect). .pth files are read with "
        "torch.load(weights_only=True): pickled code is refused, never run.",
    )
    p.add_argument("src", type=Path, help="checkpoint: .pth/.pt/.bin/.safetensors (torchvision, timm, megvii), "
                   ".h5/.weights.h5 (keras)")  # fmt: skip
    p.add_argument("--from", dest="source", required=True, choices=SOURCES, help="library the checkpoint comes from")
    p.add_argument("--model", required=True, help="model name in that library (e.g. mobilenet_v3_large, "
                   "tf_mobilenetv3_large_100, MobileNetV2) or our registry name (mobilenet_v2_035, "
                   "shufflenet_v1_g3_100); a wrong name lists the valid ones")  # fmt: skip
    p.add_argument("-o", "--output", type=Path, required=True, help="model directory to write (new or empty)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model directory at --output whole")
    p.add_argument("--num-classes", type=int, default=None, help="expected classes (default: the checkpoint's)")
    p.add_argument("--labels", default="auto", help="'auto' (ImageNet names for 1000 classes), 'imagenet', 'none', "
                   "or a text file with one label per line")  # fmt: skip
    p.add_argument("--keep-background", action="store_true",
                   help="keep output 0 of a 1001-class TF head instead of dropping it")  # fmt: skip
    p.set_defaults(func=run_convert)

    p = sub.add_parser(
        "predict",
        help="classify images, or detect objects / segment them, with a model directory",
        description="Predict with a model directory, applying the preprocessing in its config; results are "
        "printed as each batch finishes.",
    )
    p.add_argument("directory", help="model directory (from convert, train or save_model) or shipped NAME.TAG")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files (any format Pillow reads), folders (the images inside, sorted) or quoted "
                        "glob patterns such as 'photos/**/*.jpg'")  # fmt: skip
    p.add_argument("--topk", type=int, default=5, help="classes to print per image (default 5)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda / cuda:N")
    p.add_argument("--json", action="store_true", help="print one JSON object per image, one per line")
    p.add_argument(
        "--save",
        metavar="DIR",
        help="write each image with its prediction drawn (top classes, boxes or mask) as DIR/<stem>.png",
    )
    p.add_argument("--min-score", type=float, default=0.3, help="detection: the lowest score shown (default 0.3)")
    p.add_argument("--overwrite", action="store_true",
                   help="--save into a predictions directory of an earlier run: its pictures are replaced, "
                        "other files stay")  # fmt: skip
    p.set_defaults(func=run_predict)


def run_convert(args: argparse.Namespace) -> int:
    from ..convert import convert

    out = convert(args.src, args.output, args.source, args.model, num_classes=args.num_classes,
                  labels=args.labels, keep_background=args.keep_background, overwrite=args.overwrite)  # fmt: skip
    from ..io import read_config

    config = read_config(out)
    options = config["options"]
    print(f"{args.src} ({args.source} {args.model}) -> {out}: {config['name']}, {config['num_classes']} classes, "
          f"padding {options.get('padding')}, bn_eps {options.get('bn_eps')}")  # fmt: skip
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from ..predict import iter_predictions

    results = iter_predictions(args.directory, args.images, topk=args.topk, min_score=args.min_score,
                               save=args.save, overwrite=args.overwrite, device=args.device,
                               batch_size=args.batch_size)  # fmt: skip
    for result in results:  # streamed: each line as its batch finishes
        if args.json:
            print(json.dumps({k: v for k, v in result.items() if k != "mask"}), flush=True)
            continue
        print(result["image"])
        for entry in result.get("top", []):
            print(f"  {entry['probability']:.4f}  {entry['index']:>5}  {entry['label']}")
        for d in result.get("detections", []):
            print(f"  {d['score']:.3f}  {d['label']:<14} {', '.join(f'{v:.0f}' for v in d['box'])}")
        for label, n in result.get("pixels", {}).items():
            print(f"  {n:>8} px  {label}")
        if "picture" in result:
            print(f"  -> {result['picture']}")
        print(end="", flush=True)
    return 0
