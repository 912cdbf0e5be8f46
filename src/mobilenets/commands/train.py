"""``train`` and ``eval``: train on Fashion-MNIST, IDX or ImageFolder data; evaluate runs and model directories."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging

from . import square_resolution_arg

log = logging.getLogger(__name__)


def add_commands(sub: argparse._SubParsersAction) -> None:
    from ..devices import DEVICE_HELP
    from ..training.recipes import RECIPES

    # No defaults in the namespace: an option is in it only when given, so --resume can tell what the
    # user asked to change (TrainConfig holds the defaults).
    p = sub.add_parser(
        "train",
        help="train a model (resumable; under torchrun: DistributedDataParallel)",
        description="Train MODEL on DATA into RUN_DIR; --resume RUN_DIR continues an interrupted run.",
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument("--model", "-m", help="registered model name (see `mobilenets list`)")
    p.add_argument(
        "--data",
        "-d",
        help="'fashion-mnist' (Debian package dataset-fashion-mnist), a directory with the four IDX "
        "files, or an ImageFolder root with train/<class>/ and val/<class>/ (default: fashion-mnist)",
    )
    p.add_argument("--output", "-o", help="run directory (new or empty): checkpoint, metrics, best model, report")
    p.add_argument("--overwrite", action="store_true", help="delete the earlier run in --output and start over")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint; "
                   "only --epochs, --workers, --threads, --checkpoint-every, --max-steps, --no-progress and "
                   "--no-tensorboard may be given again to change")  # fmt: skip
    p.add_argument(
        "--init",
        metavar="MODEL_DIR",
        help="start from the weights of a model directory (fine-tuning: a converted torchvision/timm/Keras "
        "model or a run's best/); its architecture is used, with a new classifier if the class count differs",
    )
    p.add_argument(
        "--init-backbone",
        metavar="RUN_OR_MODEL_DIR",
        help="detection/segmentation: start the backbone from a classification run (its best/) or model directory",
    )
    p.add_argument("--teacher", metavar="MODEL_DIR", help="classification: distil from this model directory or "
                   "NAME.TAG (its outputs on each augmented batch, averaged with the mirror image when the "
                   "recipe flips)")  # fmt: skip
    p.add_argument("--distill-weight", type=float, help="with --teacher: the loss's share that matches the "
                   "teacher, the rest fits the labels (default 0.5)")  # fmt: skip
    p.add_argument("--distill-temperature", type=float, help="with --teacher: softmax temperature (default 1)")
    p.add_argument(
        "--recipe", choices=sorted(RECIPES), help="named preset (default: the task's: fast, detection, segmentation)"
    )
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
        type=square_resolution_arg,
        help="input size (default: 28 for IDX data when the model takes it, else 32; 224 for ImageFolder)",
    )
    p.add_argument("--in-chans", type=int, choices=[1, 3], help="1: grayscale, 3: RGB (default: the data's)")
    p.add_argument("--stem-stride", type=int, choices=[1, 2], help="1: small-input adaptation (default: 2, the paper)")
    p.add_argument("--model-option", dest="model_options", metavar="KEY=VALUE", action="append", type=model_option,
                   help="a model builder option, repeatable, e.g. reduced_tail=true or width_mult=0.75 "
                        "(`mobilenets info NAME` lists a model's options)")  # fmt: skip
    p.add_argument("--seed", type=int, help="initialisation, data order and augmentation (default 0); built-in "
                   "canvases are drawn by their name (fmnist-seg-seed2), not by this")  # fmt: skip
    p.add_argument(
        "--deterministic",
        action="store_true",
        help="deterministic kernels: a resumed run ends with the same weights as an uninterrupted one",
    )
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the training step's model (about 15%% faster for V1 at 56x56 on a CPU, "
                        "after ~1 min of compiling; eval and saved weights are unchanged)")  # fmt: skip
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under DDP (GPU only)")
    p.add_argument("--accum-steps", type=int, help="split each batch into N accumulated micro-batches")
    p.add_argument("--workers", type=int, help="data-loading processes for ImageFolder data (default 2)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--train-limit", type=int, help="use only the first N training images")
    p.add_argument("--val-limit", type=int, help="use only the first N validation images")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints, and every epoch (default 500)")
    p.add_argument("--max-steps", type=int, help="stop (with a checkpoint) after N steps in total")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--no-tensorboard", dest="tensorboard", action="store_false")
    p.add_argument("--device", help=DEVICE_HELP + " (--resume: the run's, unless given)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="top-1/top-5 and loss of a run directory's best model or a model directory")
    p.add_argument("path", help="RUN_DIR (uses RUN_DIR/best) or a model directory")
    p.add_argument("--data", "-d", default=None,
                   help="as for train; evaluates its val/test split (default: a run's own data, from its run.json; "
                        "a model directory needs --data)")  # fmt: skip
    p.add_argument("--batch-size", "-b", type=int, default=256)
    p.add_argument("--limit", type=int, default=0, help="only the first N images")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--tta", action="store_true",
                   help="flip test-time augmentation: average the logits of each image and its mirror")  # fmt: skip
    p.add_argument("--device", default="cpu", help=DEVICE_HELP)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval)


_NOT_RECIPE = {"command", "func", "verbose", "quiet", "resume", "output", "overwrite"}


def model_option(text: str) -> tuple[str, object]:
    """KEY=VALUE with VALUE read as JSON where it is a number, true/false or null, else as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE such as reduced_tail=true, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def cmd_train(args) -> int:
    import time
    from pathlib import Path

    from ..training import TrainConfig, resume_config, train

    started = time.time()
    # Only options given on the command line are in args (the parser has no defaults).
    given = {k: v for k, v in vars(args).items() if k not in _NOT_RECIPE}
    if "model_options" in given:
        given["model_options"] = dict(given["model_options"])
    resume, output = getattr(args, "resume", None), getattr(args, "output", None)
    if resume:
        if output and Path(output).absolute() != Path(resume).absolute():
            raise ValueError(f"--resume continues the run in its own directory; drop -o {output}")
        if getattr(args, "overwrite", False):
            raise ValueError("--overwrite starts a run over; it does not go with --resume")
        # The saved run, with only the explicitly given options that are safe to change (others refused).
        config = resume_config(resume, **given)
        summary = train(config, resume=True)
    else:
        if not (given.get("model") or given.get("init")) or not output:
            raise ValueError("train needs --model NAME (or --init MODEL_DIR) and --output RUN_DIR, or --resume RUN_DIR")
        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        config = TrainConfig(output=output, **{"model": None, **{k: v for k, v in given.items() if k in fields}})
        summary = train(config, overwrite=getattr(args, "overwrite", False))
    if summary.get("stopped_early"):
        print(f"stopped after step {summary['step']}; continue with `mobilenets train --resume {config.output}`")
        return 0
    from ..tasks import get_task

    size = f"{summary['params']:,} params, {summary['madds'] / 1e6:.2f}M MAdds"
    figures = get_task(summary["task"]).headline(summary)
    print(f"{summary['model']}: {figures}  ({size})")
    elapsed = time.time() - started
    print(f"wall time of this command {elapsed:.0f} s ({elapsed / 60:.1f} min); report: {config.output}/report.md")
    return 0


def cmd_eval(args) -> int:
    from ..tasks import get_task

    task = get_task(_saved_task(args.path))
    metrics = task.evaluate_saved(args.path, args.data, limit=args.limit, batch_size=args.batch_size,
                                  workers=args.workers, device=args.device, tta=args.tta)  # fmt: skip
    if args.json:
        print(json.dumps({k: v for k, v in metrics.items() if k != "confusion"}))
        return 0
    print("\n".join(task.eval_lines(metrics)))
    return 0


def _saved_task(path: str) -> str:
    """The task of a run's best model or a model directory (classification when its name is not registered)."""
    from ..io import read_config, resolve_model_dir
    from ..tasks import task_of

    try:
        model_dir = resolve_model_dir(path)
    except FileNotFoundError:
        return task_of("")  # a classifier's: evaluate() names what is missing
    return task_of(read_config(model_dir).get("name"))
