"""``train`` and ``eval``: train on Fashion-MNIST, IDX or ImageFolder data; evaluate runs and model directories."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging

log = logging.getLogger(__name__)


def add_commands(sub: argparse._SubParsersAction) -> None:
    from ..devices import DEVICE_HELP
    from ..training.recipes import RECIPES

    p = sub.add_parser(
        "train",
        help="train a model (resumable; under torchrun: DistributedDataParallel)",
        description="Train MODEL on DATA into RUN_DIR; --resume RUN_DIR continues an interrupted run.",
    )
    p.add_argument("--model", "-m", help="registered model name (see `mobilenets list`)")
    p.add_argument(
        "--data",
        "-d",
        default="fashion-mnist",
        help="'fashion-mnist' (Debian package dataset-fashion-mnist), a directory with the four IDX "
        "files, or an ImageFolder root with train/<class>/ and val/<class>/ (default: fashion-mnist)",
    )
    p.add_argument("--output", "-o", help="run directory: checkpoint, metrics, best model, report")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument(
        "--init",
        metavar="MODEL_DIR",
        help="start from the weights of a model directory (fine-tuning: a converted torchvision/timm/Keras "
        "model or a run's best/); its architecture is used, with a new classifier if the class count differs",
    )
    p.add_argument("--recipe", default="fast", choices=sorted(RECIPES), help="named preset (default: fast)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", "-b", type=int, help="global batch size (split over processes)")
    p.add_argument("--lr", type=float, help="absolute learning rate (the recipe's scales with the batch size)")
    p.add_argument("--optimizer", choices=["sgd", "rmsprop", "adamw"])
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--warmup-epochs", type=float)
    p.add_argument("--drop-rate", type=float)
    p.add_argument("--ema-decay", type=float, help="EMA of weights (0 disables)")
    p.add_argument("--no-augment", dest="augment", action="store_false", help="no random crop/flip/erasing")
    p.add_argument(
        "--resolution",
        "-r",
        type=int,
        help="input size (default: 28 for IDX data when the model takes it, else 32; 224 for ImageFolder)",
    )
    p.add_argument("--in-chans", type=int, choices=[1, 3], help="1: grayscale, 3: RGB (default: the data's)")
    p.add_argument("--stem-stride", type=int, choices=[1, 2], help="1: small-input adaptation (default: 2, the paper)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--deterministic",
        action="store_true",
        help="deterministic kernels: a resumed run ends with the same weights as an uninterrupted one",
    )
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under DDP (GPU only)")
    p.add_argument("--accum-steps", type=int, default=1, help="split each batch into N accumulated micro-batches")
    p.add_argument("--workers", type=int, default=2, help="data-loading processes for ImageFolder data")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--train-limit", type=int, default=0, help="use only the first N training images")
    p.add_argument("--val-limit", type=int, default=0, help="use only the first N validation images")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints (and every epoch)")
    p.add_argument("--max-steps", type=int, default=0, help="stop (with a checkpoint) after N steps in total")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--no-tensorboard", dest="tensorboard", action="store_false")
    p.add_argument("--device", help=DEVICE_HELP + " (--resume: the run's, unless given)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="top-1/top-5 and loss of a run directory's best model or a model directory")
    p.add_argument("path", help="RUN_DIR (uses RUN_DIR/best) or a model directory")
    p.add_argument("--data", "-d", default="fashion-mnist", help="as for train; evaluates its val/test split")
    p.add_argument("--batch-size", "-b", type=int, default=256)
    p.add_argument("--limit", type=int, default=0, help="only the first N images")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--tta", action="store_true",
                   help="flip test-time augmentation: average the logits of each image and its mirror")  # fmt: skip
    p.add_argument("--device", default="cpu", help=DEVICE_HELP)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval)


_NOT_RECIPE = {"command", "func", "verbose", "resume", "output"}


def cmd_train(args) -> int:
    import time

    from ..training import TrainConfig, read_run_config, train

    started = time.time()
    given = {k: v for k, v in vars(args).items() if k not in _NOT_RECIPE}
    if args.resume:
        # A --max-steps of the interrupted invocation does not carry over to the resumed one.
        config = dataclasses.replace(read_run_config(args.resume), output=args.resume, max_steps=0)
        # On resume only explicitly given values that are safe to change override the saved run.
        safe = ("epochs", "workers", "threads", "checkpoint_every", "max_steps", "progress", "tensorboard", "device")
        for key in safe:
            if given.get(key) not in (None, 0) and given[key] != getattr(config, key):
                if key == "epochs":
                    log.warning("changing epochs from %s to %s also changes the schedule", config.epochs, given[key])
                config = dataclasses.replace(config, **{key: given[key]})
        summary = train(config, resume=True)
    else:
        if not (args.model or args.init) or not args.output:
            raise ValueError("train needs --model NAME (or --init MODEL_DIR) and --output RUN_DIR, or --resume RUN_DIR")
        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        given["device"] = args.device or "cpu"
        config = TrainConfig(output=args.output, **{k: v for k, v in given.items() if k in fields})
        summary = train(config)
    if "top1" in summary:
        print(
            f"{summary['model']}: {summary['val_split']} top-1 {summary['top1']:.2f}%  top-5 {summary['top5']:.2f}%"
            f"  ({summary['params']:,} params, {summary['madds'] / 1e6:.2f}M MAdds)"
        )
        elapsed = time.time() - started
        print(f"wall time of this command {elapsed:.0f} s ({elapsed / 60:.1f} min); report: {config.output}/report.md")
    else:
        print(f"stopped after step {summary['step']}; continue with `mobilenets train --resume {config.output}`")
    return 0


def cmd_eval(args) -> int:
    from ..training import evaluate

    metrics = evaluate(args.path, args.data, batch_size=args.batch_size, limit=args.limit, workers=args.workers,
                       tta=args.tta, device=args.device)  # fmt: skip
    if args.json:
        print(json.dumps({k: v for k, v in metrics.items() if k != "confusion"}))
        return 0
    print(
        f"{metrics['model']} on {metrics['data']} ({metrics['split']}, {metrics['images']} images): "
        f"top-1 {metrics['top1']:.2f}%  top-5 {metrics['top5']:.2f}%  loss {metrics['loss']:.4f}"
        + ("  (flip TTA)" if metrics["tta"] else "")
        + (f"  ({metrics['skipped']} unreadable images skipped)" if metrics["skipped"] else "")
    )
    return 0
