"""``data export``, ``data show`` and ``data info``: the detection and segmentation datasets, as files and pictures."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="detection/segmentation data: export the built-in canvases, show or describe data")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    e = actions.add_parser("export", help="write fmnist-det as a COCO dataset or fmnist-seg in the VOC layout",
                           description="Write the Fashion-MNIST canvases as files other tools read: fmnist-det as "
                           "COCO ({train,val}/*.png + annotations/instances_{train,val}.json), fmnist-seg in the "
                           "VOC layout (images/, SegmentationClass/, ImageSets/Segmentation/).")  # fmt: skip
    e.add_argument(
        "name", help="fmnist-det, fmnist-seg, or a full canvas name such as fmnist-det-128-n1to4-s24to64-seed1"
    )
    e.add_argument("--output", "-o", required=True, help="a new or empty directory")
    e.add_argument("--train", type=int, default=10000, help="training canvases (default 10000)")
    e.add_argument("--val", type=int, default=1000, help="validation canvases (default 1000)")
    _canvas_options(e)
    e.set_defaults(func=cmd_export)

    s = actions.add_parser("show", help="draw a grid of samples with their boxes or colour masks")
    s.add_argument("name", help="fmnist-det, fmnist-seg, a COCO directory or a VOC-layout directory")
    s.add_argument("--output", "-o", help="PNG file to write (default: NAME-SPLIT.png here)")
    s.add_argument("--overwrite", action="store_true", help="replace the PNG file if it exists")
    s.add_argument("--split", choices=["train", "val"], default="val", help="train shows the augmented samples")
    s.add_argument("--count", type=int, default=16, help="samples to draw (default 16)")
    s.add_argument("--resolution", "-r", type=int, help="picture size of each sample (default: the data's)")
    _canvas_options(s)
    s.set_defaults(func=cmd_show)

    i = actions.add_parser("info", help="a dataset's name, parameters, sizes, skipped items and statistics")
    i.add_argument("name", help="fmnist-det, fmnist-seg, a COCO directory or a VOC-layout directory")
    i.add_argument("--count", type=int, default=1000, help="canvases to measure statistics on (default 1000)")
    i.add_argument("--json", action="store_true", help="print one JSON object")
    _canvas_options(i)
    i.set_defaults(func=cmd_info)


def _canvas_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, help="canvas seed (default: the name's, 1)")
    p.add_argument("--size", type=int, help="canvas size in pixels (default: the name's, 128)")


def _spec_name(args) -> str:
    from ..data.canvas import CanvasSpec, is_canvas_name

    if not is_canvas_name(args.name):
        if args.seed is not None or args.size is not None:
            raise ValueError("--seed and --size choose canvases; they do not apply to a directory")
        return args.name
    return CanvasSpec.parse(args.name).replace(seed=args.seed, size=args.size).name


def _load(name: str, resolution: int | None = None, val_limit: int = 0):
    from ..data.load import load_task_data

    return load_task_data(name, resolution=resolution, val_limit=val_limit)


def cmd_export(args) -> int:
    from ..data import export_canvases

    summary = export_canvases(_spec_name(args), args.output, train=args.train, val=args.val)
    print(f"{summary['name']}: {args.train} train + {args.val} val canvases ({summary['items']['train']} + "
          f"{summary['items']['val']} items) written as {summary['format'].upper()} to {args.output}")  # fmt: skip
    return 0


def cmd_show(args) -> int:
    from .. import io
    from ..data.show import draw_grid, save_png

    if args.count < 1:
        raise ValueError(f"--count must be >= 1, got {args.count}")
    name = _spec_name(args)
    data = _load(name, args.resolution, args.count if args.split == "val" else 0)
    output = Path(args.output or f"{Path(data.name).name}-{args.split}.png")
    io.check_output(output, directory=False, overwrite=args.overwrite)
    save_png(draw_grid(data, split=args.split, count=args.count), output)
    print(f"{data.name}: {min(args.count, len(data.val if args.split == 'val' else data.train))} {args.split} "
          f"samples drawn to {output}")  # fmt: skip
    return 0


def cmd_info(args) -> int:
    name = _spec_name(args)
    data = _load(name)
    info = data.to_dict()
    if "canvas" in info:
        info["statistics"] = canvas_statistics(data, args.count)
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"{info['name']} ({info['task']}, {info['source']}): {info['train_size']} train, {info['val_size']} val, "
          f"{info['num_classes']} classes with background, input {info['resolution']}, "
          f"augment {info['augment']}")  # fmt: skip
    print("labels: " + ", ".join(info["labels"]))
    for split, counts in info["skipped"].items():
        if counts:
            print(f"skipped in {split}: " + ", ".join(f"{n} {reason}" for reason, n in counts.items()))
    if any(info.get("clipped", {}).values()):
        print("boxes clipped to their image: " + ", ".join(f"{n} in {split}" for split, n in info["clipped"].items()))
    for key, value in info.get("statistics", {}).items():
        print(f"{key}: {value}")
    return 0


def canvas_statistics(data, count: int) -> dict:
    """Items per canvas, background share and generation speed over the first ``count`` training canvases."""
    import time

    import numpy as np

    generator = data.train.generator
    generator(0)  # Fashion-MNIST read before the clock starts
    start, cpu = time.perf_counter(), time.process_time()
    canvases = [generator(i) for i in range(min(count, len(data.train)))]
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    items = np.array([len(c.labels) for c in canvases])
    return {
        "canvases_measured": len(canvases),
        "items_per_canvas": round(float(items.mean()), 3),
        "items_histogram": {int(k): int((items == k).sum()) for k in np.unique(items)},
        "background_fraction": round(float(np.mean([(c.mask == 0).mean() for c in canvases])), 4),
        "canvases_per_second": round(len(canvases) / seconds),
        "canvases_per_cpu_second": round(len(canvases) / max(cpu_seconds, 1e-9)),
    }
