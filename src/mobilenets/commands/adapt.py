"""``adapt``: NetAdapt a trained model's per-layer widths to a latency target on the user's runtime."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path


def add_commands(sub: argparse._SubParsersAction) -> None:
    from ..search.latency import RUNTIMES
    from ..training.recipes import RECIPES

    # No defaults in the namespace: an option is in it only when given, so --resume can tell what changed.
    p = sub.add_parser(
        "adapt",
        help="NetAdapt: per-layer widths for a latency target, measured on your runtime (resumable)",
        description="Narrow MODEL_OR_RUN_DIR's widths step by step until its measured latency meets --target; "
        "every accepted network is a model directory in ADAPT_DIR, with history.json and pareto.png.",
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument("model", nargs="?", metavar="MODEL_OR_RUN_DIR", help="a model directory or a training run")
    p.add_argument("--data", "-d", help="the data the model was trained on, as for train (default: fashion-mnist)")
    p.add_argument("--output", "-o", metavar="ADAPT_DIR", help="new or empty directory for the job")
    p.add_argument("--resume", metavar="ADAPT_DIR", help="continue an interrupted job (its saved options)")
    p.add_argument("--target", help="latency to reach: a fraction of the seed's measured latency (0.6) or ms "
                   "(2.5ms) (default 0.6)")  # fmt: skip
    p.add_argument("--runtime", choices=list(RUNTIMES), help="where latency is measured (default onnxruntime)")
    p.add_argument("--threads", type=int, help="threads of that runtime (default 1)")
    p.add_argument("--resolution", "-r", type=int, help="input size timed (default: the model's)")
    p.add_argument("--delta", type=float, help="latency cut per step, a fraction of the seed's (default 0.05; "
                   "P-V3 used 0.01 with 10k-step fine-tunes)")  # fmt: skip
    p.add_argument("--criterion", choices=["slope", "accuracy"],
                   help="slope: largest dAcc/|dLatency| (P-V3, default); accuracy: highest (NetAdapt)")  # fmt: skip
    p.add_argument("--steps", type=int, help="short fine-tune steps per proposal (default 40)")
    p.add_argument("--batch-size", "-b", type=int, help="batch of the short fine-tunes (default 128)")
    p.add_argument("--lr", type=float, help="lr of the short fine-tunes (default: a tenth of the recipe's)")
    p.add_argument("--holdout", type=int, help="training images held out to select proposals (default 5000)")
    p.add_argument("--train-limit", type=int, help="use only the first N training images")
    p.add_argument("--val-limit", type=int, help="use only the first N test images (finish report)")
    p.add_argument("--recipe", choices=sorted(RECIPES), help="recipe of the finish (default fast)")
    p.add_argument("--finish", choices=["finetune", "scratch", "none"],
                   help="after the search: the recipe from the adapted weights (default) or from scratch")  # fmt: skip
    p.add_argument("--finish-epochs", type=int, help="epochs of the finish (default: the recipe's)")
    p.add_argument("--uniform", help="width multipliers to compare with, e.g. 0.75,0.5 (default auto: the two "
                   "bracketing the adapted latency; '' none)")  # fmt: skip
    p.add_argument("--max-steps", type=int, help="stop after N accepted steps (default 50)")
    p.add_argument("--rounds", type=int, help="timing rounds (default 5)")
    p.add_argument("--round-seconds", type=float, help="seconds per timing round and network (default 0.2)")
    p.add_argument("--table", help="latency table JSON to reuse across jobs (default ADAPT_DIR/latency_table.json)")
    p.add_argument("--seed", type=int, help="(default 0)")
    p.add_argument("--workers", type=int, help="data-loading processes for ImageFolder data (default 0)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.set_defaults(func=cmd_adapt)


_NOT_CONFIG = {"command", "func", "verbose", "quiet", "resume", "output", "model"}


def cmd_adapt(args) -> int:
    from ..search.netadapt import AdaptConfig, adapt, read_adapt_config

    given = {k: v for k, v in vars(args).items() if k not in _NOT_CONFIG}
    resume, output, model = getattr(args, "resume", None), getattr(args, "output", None), getattr(args, "model", None)
    if getattr(args, "quiet", False):
        given["progress"] = False
    if resume:
        if output and Path(output).absolute() != Path(resume).absolute():
            raise ValueError(f"--resume continues the job in its own directory; drop -o {output}")
        saved = read_adapt_config(resume)
        if model and Path(model).absolute() != Path(saved.model).absolute():
            raise ValueError(f"--resume {resume} adapts {saved.model}; drop {model}")
        config = dataclasses.replace(saved, output=str(resume), **given)
    else:
        if not model or not output:
            raise ValueError("adapt needs MODEL_OR_RUN_DIR and -o ADAPT_DIR, or --resume ADAPT_DIR")
        config = AdaptConfig(model=model, output=output, **given)
    history = adapt(config, resume=bool(resume))
    print(summary_table(history))
    print(f"history: {Path(config.output) / 'history.json'}; plot: {Path(config.output) / 'pareto.png'}")
    return 0


def summary_table(history: dict) -> str:
    """Seed, adapted and uniform baselines: measured latency (one interleaved run) and accuracy."""
    measured = history.get("comparison", {}).get("measured_ms", {})
    finish = history.get("finish") or {}
    final = (history["steps"] or [history["seed"]])[-1]
    rows = [("seed", history["seed"]["holdout_top1"], "step_00"), ("adapted", final["holdout_top1"], final["dir"]
            if "dir" in final else "step_00")]  # fmt: skip
    rows += [(u["name"], u["holdout_top1"], u["dir"]) for u in history.get("uniform", [])]
    split = (finish.get("seed") or {}).get("split", "test")
    header = f"{'network':<16} {'latency ms':>10} {'holdout top-1':>13} {split + ' top-1':>12}  directory"
    lines = [header, "-" * len(header)]
    for name, holdout, directory in rows:
        ms = measured.get(name)
        top1 = (finish.get(name) or {}).get("top1")
        lines.append(
            f"{name:<16} {ms if ms is None else f'{ms:.3f}':>10} {holdout:>13.2f} "
            f"{'' if top1 is None else f'{top1:.2f}':>12}  {(finish.get(name) or {}).get('dir', directory)}"
        )
    table = history.get("latency_table", {})

    def pct(v):
        return "n/a" if v is None else f"{v:.1f}%"

    lines.append(f"\n{len(history['steps'])} steps, stopped: {history.get('stop_reason')}; target "
                 f"{history['budget_ms']:.3f} ms of seed {history['seed_ms']:.3f} ms")  # fmt: skip
    lines.append(f"latency table: {table.get('entries')} blocks; error vs whole-network timings: raw "
                 f"{pct(table.get('mape_raw'))}, calibrated {pct(table.get('mape_calibrated'))}, predictions made "
                 f"before each timing {pct(table.get('mape_predicted'))}")  # fmt: skip
    machine = history.get("target", {}).get("machine", {})
    lines.append(f"cpu: {machine.get('cpu')}; runtime {history.get('target', {}).get('runtime')}, "
                 f"{history.get('target', {}).get('threads')} thread(s)")  # fmt: skip
    return "\n".join(lines)
