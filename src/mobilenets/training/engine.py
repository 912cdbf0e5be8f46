"""The training loop every task shares: recipes, EMA, accumulation, atomic checkpoints, exact resume, NaN guard, DDP.

A task (``mobilenets.tasks``) owns the model, data, loss, metrics and pictures; ``fit`` owns the rest.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import UsageError
from ..io import atomic_write_text, check_output, read_config
from ..registry import get_entry
from ..tasks import get_task, task_of
from .checkpoint import (
    BEST_DIR,
    CHECKPOINT,
    FINAL_DIR,
    RUN_CONFIG,
    RunState,
    all_finite,
    clear_run,
    is_run_dir,
    load_checkpoint,
    restore_rng,
    run_lock,
    save_checkpoint,
)
from .dist import setup_distributed
from .optim import EMA, lr_factor, make_optimizer, param_groups
from .recipes import Recipe, get_recipe
from .task import Task

log = logging.getLogger(__name__)

__all__ = [
    "BEST_DIR", "CHECKPOINT", "FINAL_DIR", "RUN_CONFIG", "TrainConfig", "fit", "lr_factor", "param_groups", "train",
]  # fmt: skip

# Options a resumed run may change: they do not alter the arithmetic of the remaining steps
# (epochs does, through the schedule, and is allowed with a warning).
SAFE_ON_RESUME = (
    "epochs", "workers", "threads", "checkpoint_every", "max_steps", "progress", "tensorboard", "device", "compile",
)  # fmt: skip
_OPTION_NAMES = {"augment": "--no-augment", "progress": "--no-progress", "tensorboard": "--no-tensorboard"}


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""


@dataclass
class TrainConfig:
    """Everything that defines a run (saved as RUN_DIR/run.json; ``--resume`` reads it back).

    Recipe fields left as ``None`` come from the named recipe; ``lr`` is absolute, while the
    recipe's lr scales linearly with ``batch_size``.
    """

    model: str | None  # a registry name; may be None with ``init`` (then the init model's name)
    output: str
    data: str = "fashion-mnist"
    init: str | None = None  # model directory whose weights start the run (fine-tuning)
    init_backbone: str | None = None  # a classifier's run or model directory: the backbone of a head's model
    teacher: str | None = None  # classification: a model directory (or NAME.TAG) to distil from
    distill_weight: float | None = None  # the loss's share that matches the teacher (None: 0.5; the rest: labels)
    distill_temperature: float | None = None  # None: 1; softens both sides, the matching term is scaled by T^2
    recipe: str | None = None  # None: the task's default (its Task.default_recipe)
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str | None = None
    weight_decay: float | None = None
    label_smoothing: float | None = None
    warmup_epochs: float | None = None
    drop_rate: float | None = None
    ema_decay: float | None = None
    augment: bool = True
    resolution: int | None = None
    in_chans: int | None = None
    stem_stride: int | None = None
    model_options: dict = dataclasses.field(default_factory=dict)  # more builder options, e.g. reduced_tail
    seed: int = 0
    deterministic: bool = False
    channels_last: bool = False
    bf16: bool = False
    compile: bool = False  # torch.compile the training forward (eval and saved weights stay eager)
    sync_bn: bool = False
    accum_steps: int = 1
    workers: int = 2
    threads: int = 0
    train_limit: int = 0
    val_limit: int = 0
    checkpoint_every: int = 500
    max_steps: int = 0
    progress: bool = True
    tensorboard: bool = True
    device: str = "cpu"  # "cpu", "cuda" or "cuda:N"; never picked silently

    def resolved_recipe(self, family: str, default: str = "fast") -> Recipe:
        recipe = get_recipe(self.recipe or default, family)
        batch = self.batch_size or recipe.batch_size
        lr = self.lr if self.lr is not None else recipe.lr * batch / recipe.batch_size
        return recipe.replace(
            epochs=self.epochs,
            batch_size=batch,
            lr=lr,
            optimizer=self.optimizer,
            weight_decay=self.weight_decay,
            label_smoothing=self.label_smoothing,
            warmup_epochs=self.warmup_epochs,
            drop_rate=self.drop_rate,
            ema_decay=self.ema_decay,
            augment=recipe.augment if self.augment else {},
        )


def _option(key: str) -> str:
    return _OPTION_NAMES.get(key, "--" + key.replace("_", "-"))


def _check_resume_change(saved: dict, config: TrainConfig) -> None:
    """Refuse a resumed config that differs from the saved run in anything outside SAFE_ON_RESUME."""
    for f in dataclasses.fields(TrainConfig):
        key = f.name
        if key in SAFE_ON_RESUME or key == "output" or key not in saved:
            continue
        if getattr(config, key) != saved[key]:
            raise ValueError(
                f"{_option(key)} cannot change on --resume (the run has {saved[key]!r}, given "
                f"{getattr(config, key)!r}): a resumed run continues exactly; start a new run with -o "
                f"(or fine-tune its best model with --init RUN_DIR/{BEST_DIR})"
            )


def resume_config(run_dir: str | os.PathLike, **changes) -> TrainConfig:
    """The saved config of ``run_dir`` with ``changes`` (options given again on the command line).

    Only SAFE_ON_RESUME options may differ from the saved run (changing ``epochs`` warns: it
    stretches the schedule); any other raises a ValueError naming the option. A ``max_steps`` of
    the interrupted invocation does not carry over.
    """
    saved = dataclasses.replace(read_run_config(run_dir), output=str(run_dir), max_steps=0)
    unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise TypeError(f"unknown TrainConfig fields {unknown}")
    config = dataclasses.replace(saved, **changes)
    _check_resume_change(dataclasses.asdict(saved), config)
    if config.epochs != saved.epochs:
        log.warning("changing epochs from %s to %s also changes the lr schedule of the remaining steps",
                    saved.epochs, config.epochs)  # fmt: skip
    return config


def run_config_of(model_dir: Path, data_hint: str) -> TrainConfig:
    """The config of the run whose best/ is ``model_dir``; a bare model directory does not say what data it was
    trained on, which is an error naming the --data it needs (``data_hint``: what --data takes)."""
    if model_dir.name != BEST_DIR or not (model_dir.parent / RUN_CONFIG).is_file():
        raise UsageError(f"{model_dir} is a model directory, not a run: it does not say what data it was trained "
                         f"on; pass --data ({data_hint})")  # fmt: skip
    return read_run_config(model_dir.parent)


def read_run_config(run_dir: str | Path) -> TrainConfig:
    path = Path(run_dir) / RUN_CONFIG
    if not path.is_file():
        raise FileNotFoundError(
            f"{run_dir} is not a run directory (no {RUN_CONFIG}); start one with `mobilenets train`"
        )
    try:
        return TrainConfig(**json.loads(path.read_text())["config"])
    except (KeyError, TypeError, ValueError) as err:  # a hand-edited or foreign run.json is bad input, not our bug
        raise ValueError(
            f"{path} is not a run config written by mobilenets ({err.__class__.__name__}: {err})"
        ) from None


# --- the loop ------------------------------------------------------------------------------------


def train(config: TrainConfig, *, resume: bool = False, overwrite: bool = False) -> dict:
    """Train ``config.model`` on ``config.data`` into ``config.output``; returns the run summary.

    The registered model's task (classification, detection, segmentation) decides the data, loss
    and metrics. ``output`` must be a new or empty directory; an earlier run there is deleted
    first only with ``overwrite``. With ``resume``, continues from ``output/checkpoint.pt`` (only
    SAFE_ON_RESUME options may differ from the saved run). Under torchrun, trains with DDP and
    only rank 0 writes files.
    """
    if resume and not config.model and (Path(config.output) / RUN_CONFIG).is_file():
        # A run started from --init saved the init model's name: a resume needs no init directory.
        config = dataclasses.replace(config, model=read_run_config(config.output).model)
    return fit(task_for(config), config, resume=resume, overwrite=overwrite)


def task_for(config: TrainConfig) -> Task:
    """The task of ``config.model``'s registry entry (of the init model's, with ``--init``)."""
    name = config.model or (read_config(config.init).get("name") if config.init else None)
    if not name:
        raise ValueError("train needs a model: give --model NAME (or --init MODEL_DIR to start from saved weights)")
    return get_task(task_of(name))()


def fit(task: Task, config: TrainConfig, *, resume: bool = False, overwrite: bool = False) -> dict:
    """Train ``task``'s model with ``config``'s recipe and run options (see ``train``)."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        if config.threads:
            torch.set_num_threads(config.threads)
        if config.deterministic:
            torch.use_deterministic_algorithms(True)
        with contextlib.ExitStack() as hold:  # the run directory's lock, released however the run ends
            return _fit(task, config, resume, overwrite, hold)
    finally:  # process-wide settings go back as they were (train() may be one call of a longer program)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _fit(task: Task, config: TrainConfig, resume: bool, overwrite: bool, hold: contextlib.ExitStack) -> dict:
    started = time.time()
    out = Path(config.output)
    dist = setup_distributed(config.device)
    if config.accum_steps < 1:
        raise ValueError(f"accum_steps must be >= 1, got {config.accum_steps}")
    if config.lr is not None and not (math.isfinite(config.lr) and config.lr > 0):
        raise ValueError(f"--lr must be a positive number, got {config.lr}")

    def check_fresh() -> str:
        return check_output(out, overwrite=overwrite, ours=is_run_dir, what="a run",
                            hint=f"continue it with --resume {out}, or pass --overwrite to start it over")  # fmt: skip

    if resume:
        if not is_run_dir(out):
            raise FileNotFoundError(f"{out} is not a run of ours (no run.json written by `mobilenets train`); "
                                    "give the -o directory of an earlier run")  # fmt: skip
        if dist.main:
            hold.enter_context(run_lock(out))
        ckpt = load_checkpoint(out)
        _check_resume_change(ckpt.get("config") or {}, config)
    else:
        # Every rank checks before rank 0 writes anything (the barrier), so all agree. Rank 0 then locks the
        # directory and checks again: another process may have taken it in between.
        fresh = check_fresh()
        if dist.main:
            hold.enter_context(run_lock(out))
            fresh = check_fresh()
        dist.barrier()
    if config.init and not config.model:
        config = dataclasses.replace(config, model=read_config(config.init).get("name"))
    if not config.model:
        raise ValueError("train needs a model: give --model NAME (or --init MODEL_DIR to start from saved weights)")
    family = get_entry(config.model).builder.__name__
    recipe = config.resolved_recipe(family, task.default_recipe)
    if recipe.batch_size % (dist.world * config.accum_steps):
        raise ValueError(
            f"batch size {recipe.batch_size} must divide by processes x accum steps "
            f"({dist.world} x {config.accum_steps})"
        )
    torch.manual_seed(config.seed)
    model = task.setup(config, recipe, run_dir=out, resume=resume)
    steps_per_epoch = task.train_size() // recipe.batch_size
    if steps_per_epoch == 0:
        raise ValueError(
            f"the training split has {task.train_size()} samples, fewer than one batch of "
            f"{recipe.batch_size}; lower --batch-size"
        )
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.to(dist.device)
    optimizer = make_optimizer(model, recipe)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, recipe, steps_per_epoch))
    ema = EMA(model, recipe.ema_decay) if recipe.ema_decay else None
    aug_gen = torch.Generator().manual_seed(config.seed + 7919 * dist.rank)
    state = RunState()
    run_record = {
        "config": dataclasses.asdict(config),
        "task": task.name,
        "recipe": recipe.to_dict(),
        **task.record(),
        "world_size": dist.world,
    }
    if resume:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ema and ckpt["ema"] is not None:
            ema.module.load_state_dict(ckpt["ema"])
        restore_rng(ckpt["rng"], aug_gen, dist.device)
        state = RunState.from_dict(ckpt["state"])
        log.info("resuming %s at epoch %d, step %d", out, state.epoch, state.step)
    else:
        torch.manual_seed(config.seed + dist.rank)  # dropout differs per rank, data order does not
    if dist.main:
        if not resume and fresh == "ours":
            clear_run(out)  # asked for with overwrite; checked above, before any work: only what we wrote
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / RUN_CONFIG, json.dumps(run_record, indent=2) + "\n")

    net: nn.Module = model
    if dist.world > 1:
        if config.sync_bn:
            if dist.device.type == "cpu":
                raise ValueError("SyncBatchNorm needs GPUs; drop --sync-bn on CPU")
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        net = nn.parallel.DistributedDataParallel(
            net, device_ids=[dist.device.index] if dist.device.type == "cuda" else None
        )
    if config.compile:
        # fuses the memory-bound BN/activation ops of training; pays off on long runs (one-off compile of ~1 min)
        net = torch.compile(net)
    eval_model = ema.module if ema else model
    writer = _tensorboard(out) if dist.main and config.tensorboard else None

    def checkpoint():
        # mid-epoch: the epoch's sums so far go with it (the loop's variables, read when this runs)
        state.partial = ({"seen": seen, "loss_sum": loss_sum, "stats": dict(stat_sums), "skipped": skipped,
                          "seconds": time.time() - t0} if state.step_in_epoch else {})  # fmt: skip
        if not all_finite(model):
            raise TrainingDiverged(
                f"weights became non-finite at step {state.step}; {out / CHECKPOINT} keeps the "
                "last good state: lower --lr and --resume"
            )
        if dist.main:
            save_checkpoint(out / CHECKPOINT, model, optimizer, scheduler, ema, state, aug_gen, run_record["config"])
        dist.barrier()

    log.info(
        "training %s (%s params, %s) on %s; recipe %s, %d epochs x %d steps of %d",
        config.model, f"{sum(p.numel() for p in model.parameters()):,}", task.name, task.describe(), recipe.name,
        recipe.epochs, steps_per_epoch, recipe.batch_size,
    )  # fmt: skip
    micro = recipe.batch_size // dist.world // config.accum_steps
    stopped_early = False
    for epoch in range(state.epoch, recipe.epochs):
        order = torch.randperm(task.train_size(), generator=torch.Generator().manual_seed(config.seed * 100003 + epoch))
        order = order[: steps_per_epoch * recipe.batch_size]
        net.train()
        partial = state.partial if state.step_in_epoch else {}  # a resumed epoch goes on from its sums
        seen, loss_sum, skipped = partial.get("seen", 0), partial.get("loss_sum", 0.0), partial.get("skipped", 0)
        stat_sums: dict[str, float] = dict(partial.get("stats", {}))
        t0 = time.time() - partial.get("seconds", 0.0)
        bar = _progress(config.progress and dist.main, steps_per_epoch, state.step_in_epoch, epoch, recipe.epochs)
        batches = task.train_batches(
            order,
            recipe.batch_size,
            generator=aug_gen,
            workers=config.workers,
            shard=(dist.rank, dist.world),
            start=state.step_in_epoch,
            loader_seed=config.seed * 7 + epoch * 1009,  # not the step: a resumed epoch draws as the first start
        )
        for x, y, bad in batches:
            skipped += bad
            x, y = x.to(dist.device), task.targets_to(y, dist.device)
            if config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = task.batch_targets(x, y)
            optimizer.zero_grad(set_to_none=True)
            step_loss, n = 0.0, len(x)
            for i in range(config.accum_steps):
                xi, yi = x[i :: config.accum_steps], task.split_targets(y, i, config.accum_steps)
                if len(xi) == 0:
                    continue
                with torch.autocast(dist.device.type, dtype=torch.bfloat16, enabled=config.bf16):
                    outputs = net(xi)
                loss, stats = task.loss(outputs, yi, recipe)
                loss = loss * len(xi) / micro / config.accum_steps
                loss.backward()
                step_loss += loss.item()
                for key, value in stats.items():
                    stat_sums[key] = stat_sums.get(key, 0.0) + value
            if not math.isfinite(dist.all_sum(step_loss)):
                raise TrainingDiverged(
                    f"loss became {step_loss} at epoch {epoch + 1}, step {state.step + 1}; "
                    f"the last good checkpoint in {out} is intact: lower --lr (now "
                    f"{recipe.lr:g}) and continue with --resume {out}"
                )
            optimizer.step()
            scheduler.step()
            if ema:
                ema.update(model, state.step)
            state.step += 1
            state.step_in_epoch += 1
            seen += n
            loss_sum += step_loss * n
            if bar is not None:
                bar.update(1)
                shown = {k: f"{v / seen:.1f}" for k, v in stat_sums.items()}
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", **shown,
                                img_s=f"{seen * dist.world / (time.time() - t0):.0f}")  # fmt: skip
            if config.max_steps and state.step >= config.max_steps:
                stopped_early = True
                break
            if config.checkpoint_every and state.step % config.checkpoint_every == 0:
                t_ckpt = time.time()
                checkpoint()
                t0 += time.time() - t_ckpt  # keep checkpoint time out of images/s
        if bar is not None:
            bar.close()
        epoch_seconds = time.time() - t0
        if stopped_early:  # the epoch's sums so far go in the checkpoint's ``partial``, counted when it ends
            checkpoint()
            break
        state.train_seconds += epoch_seconds
        state.skipped += int(dist.all_sum(skipped))
        total_seen = max(1, dist.all_sum(seen))
        row = {
            "epoch": epoch + 1,
            "step": state.step,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": dist.all_sum(loss_sum) / total_seen,
            **{f"train_{k}": dist.all_sum(v) / total_seen for k, v in sorted(stat_sums.items())},
            "epoch_seconds": round(epoch_seconds, 2),
            "images_per_s": round(dist.all_sum(seen) / max(epoch_seconds, 1e-9), 1),
        }
        if dist.main:
            metrics = task.evaluate(eval_model, device=dist.device, channels_last=config.channels_last,
                                    bf16=config.bf16, workers=config.workers,
                                    batch_size=max(256, recipe.batch_size))  # fmt: skip
            scalars = {k: v for k, v in metrics.items() if isinstance(v, float)}
            row.update({f"val_{k}": v for k, v in scalars.items()})
            log.info("epoch %d/%d: train loss %.4f | val %s | %.0fs, %.0f img/s", epoch + 1, recipe.epochs,
                     row["train_loss"], " ".join(f"{k} {v:.4g}" for k, v in scalars.items()), epoch_seconds,
                     row["images_per_s"])  # fmt: skip
            score = metrics[task.best_metric]
            meta = {"trained_on": config.data, "recipe": recipe.name, "epoch": epoch + 1, **scalars}
            if score > state.best_score:
                state.best_score, state.best_epoch = score, epoch + 1
                task.save_model(eval_model, out / BEST_DIR, meta)
            if epoch + 1 == recipe.epochs:
                task.save_model(eval_model, out / FINAL_DIR, meta)
            if writer:
                for key, value in row.items():
                    if key not in ("epoch",):
                        writer.add_scalar(key, value, epoch + 1)
                writer.flush()
        state.history.append(row)
        state.epoch, state.step_in_epoch = epoch + 1, 0
        checkpoint()
        if dist.main:
            _write_csv(out / "metrics.csv", state.history)
    summary = None
    if dist.main and not stopped_early:
        summary = task.report(out, out / BEST_DIR, config=config, recipe=recipe, state=state,
                              wall_seconds=time.time() - started)  # fmt: skip
    if writer:
        writer.close()
    dist.barrier()
    return summary or {"step": state.step, "epoch": state.epoch, "stopped_early": stopped_early}


def _write_csv(path: Path, rows: list[dict]):
    keys = list(dict.fromkeys(k for row in rows for k in row))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(keys)
    writer.writerows([_fmt(row.get(k, "")) for k in keys] for row in rows)
    atomic_write_text(path, text.getvalue())


def _fmt(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _progress(enabled: bool, total: int, initial: int, epoch: int, epochs: int):
    from ..progress import enabled as progress_enabled  # --quiet, and no bar when stderr is not a terminal

    if not progress_enabled(None if enabled else False):
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        log.warning("tqdm is not installed: no progress bar (pip install 'mobilenets[train]')")
        return None
    return tqdm(total=total, initial=initial, desc=f"epoch {epoch + 1}/{epochs}", unit="step", leave=False)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard is not installed: metrics go to metrics.csv only (pip install 'mobilenets[train]')")
        return None
    return SummaryWriter(str(out / "tensorboard"))
