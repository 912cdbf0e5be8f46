"""The training loop: recipes, EMA, atomic checkpoints, exact resume, NaN guard, DistributedDataParallel."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..io import atomic_write, atomic_write_text, build_from_config, load_model, read_config, save_model
from ..registry import create_model, get_entry
from .data import DataSpec, collate_skip, idx_batch, load_data
from .recipes import Recipe, get_recipe

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
RUN_CONFIG = "run.json"
BEST_DIR = "best"


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
    recipe: str = "fast"
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
    seed: int = 0
    deterministic: bool = False
    channels_last: bool = False
    bf16: bool = False
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

    def resolved_recipe(self, family: str) -> Recipe:
        recipe = get_recipe(self.recipe, family)
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


@dataclass
class RunState:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps completed
    step_in_epoch: int = 0
    best_top1: float = -1.0
    best_epoch: int = -1
    skipped: int = 0  # unreadable training images skipped so far
    train_seconds: float = 0.0
    history: list[dict] = field(default_factory=list)


# --- distributed ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self):
        if self.world > 1:
            torch.distributed.barrier()

    def all_sum(self, value: float) -> float:
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return t.item()


def setup_distributed(device: str = "cpu") -> Dist:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; gloo on CPU, nccl on GPU (``device`` cuda)."""
    from ..devices import resolve_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(device=resolve_device(device))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if resolve_device(device).type == "cuda":
        torch.cuda.set_device(local)
        device, backend = torch.device("cuda", local), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend)
    return Dist(rank, world, device)


# --- optimizer and schedule -------------------------------------------------------------------


def param_groups(model: nn.Module, weight_decay: float, no_decay: str) -> list[dict]:
    """Weight decay off for BN and biases (and depthwise kernels with ``bn_bias_dw``, as P-V3)."""
    if no_decay == "none" or weight_decay == 0:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    skip = set()
    for module in model.modules():
        is_dw = isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels
        if no_decay == "bn_bias_dw" and is_dw:
            skip.add(id(module.weight))
    decay, other = [], []
    for p in model.parameters():
        if p.requires_grad:
            (other if p.ndim <= 1 or id(p) in skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    groups = param_groups(model, recipe.weight_decay, recipe.no_decay)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov)
    if recipe.optimizer == "rmsprop":
        return torch.optim.RMSprop(
            groups, lr=recipe.lr, alpha=recipe.rmsprop_alpha, eps=recipe.eps, momentum=recipe.momentum
        )
    return torch.optim.AdamW(groups, lr=recipe.lr, eps=recipe.eps)


def lr_factor(step: int, recipe: Recipe, steps_per_epoch: int) -> float:
    """Multiplier of the base lr before optimizer step ``step`` (0-based)."""
    total = recipe.epochs * steps_per_epoch
    warmup = min(int(recipe.warmup_epochs * steps_per_epoch), total - 1)
    if step < warmup:
        return (step + 1) / (warmup + 1)
    t = (step - warmup) / max(1, total - warmup)
    if recipe.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    if recipe.schedule == "linear":
        return 1 - t
    return recipe.decay_rate ** ((step - warmup) / (recipe.decay_epochs * steps_per_epoch))


class EMA:
    """Exponential moving average of weights (and copy of buffers), with the usual early warm-up."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int):
        d = min(self.decay, (1 + step) / (10 + step))
        ema = self.module.state_dict()
        for name, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                ema[name].mul_(d).add_(value.detach(), alpha=1 - d)
            else:
                ema[name].copy_(value)


# --- evaluation -------------------------------------------------------------------------------


@torch.no_grad()
def evaluate_split(
    model: nn.Module,
    spec: DataSpec,
    split,
    *,
    batch_size: int = 256,
    device=None,
    channels_last: bool = False,
    bf16: bool = False,
    workers: int = 2,
    progress: bool = False,
    tta: bool = False,
) -> dict:
    """Loss, top-1, top-5 (percent) and the confusion matrix of ``model`` on ``split``.

    ``tta``: horizontal-flip test-time augmentation, the logits of each image and of its mirror
    averaged (twice the compute; meant for models trained with random flips).
    """
    device = device or next(model.parameters()).device
    model.eval()
    n_cls = len(spec.labels)
    confusion = torch.zeros(n_cls, n_cls, dtype=torch.long)
    loss_sum, top1, top5, seen, skipped = 0.0, 0, 0, 0, 0
    from ..progress import progress as with_bar  # progress=True: a bar when stderr is a terminal (and not --quiet)

    batches = _batches(spec, split, torch.arange(len(split)), batch_size, None, False, workers, None)
    for x, y, bad in with_bar(batches, f"eval {split.name}", enabled=None if progress else False,
                              total=-(-len(split) // batch_size), unit="batch"):  # fmt: skip
        skipped += bad
        if len(y) == 0:
            continue
        x, y = x.to(device), y.to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x).float()
            if tta:
                logits = (logits + model(x.flip(-1)).float()) / 2
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        k = min(5, n_cls)
        topk = logits.topk(k, dim=1).indices
        top1 += (topk[:, 0] == y).sum().item()
        top5 += (topk == y[:, None]).any(dim=1).sum().item()
        confusion += torch.bincount(y.cpu() * n_cls + topk[:, 0].cpu(), minlength=n_cls * n_cls).view(n_cls, n_cls)
        seen += len(y)
    if seen == 0:
        raise ValueError(f"no readable images in the {split.name} split of {split.source}")
    return {
        "loss": loss_sum / seen,
        "top1": 100 * top1 / seen,
        "top5": 100 * top5 / seen,
        "images": seen,
        "skipped": skipped,
        "confusion": confusion.tolist(),
    }


def _batches(
    spec: DataSpec,
    split,
    order: torch.Tensor,
    batch_size: int,
    aug_gen,
    augment: bool,
    workers: int,
    shard: tuple[int, int] | None,
    start: int = 0,
    loader_seed: int = 0,
):
    """Yield (x, y, skipped) for consecutive batches of ``order`` from batch ``start``; ``shard`` = (rank, world)."""
    chunks = [order[i : i + batch_size] for i in range(start * batch_size, len(order), batch_size)]
    if shard:
        chunks = [c[shard[0] :: shard[1]] for c in chunks]
    if spec.kind == "idx":
        for idx in chunks:
            x = idx_batch(split.images[idx], spec.preprocessing, spec.augment if augment else None, aug_gen)
            yield x, split.targets[idx], 0
        return
    loader = torch.utils.data.DataLoader(
        split.dataset,
        batch_sampler=[c.tolist() for c in chunks],
        num_workers=workers,
        collate_fn=collate_skip,
        generator=torch.Generator().manual_seed(loader_seed),
        persistent_workers=False,
    )
    yield from loader


# --- checkpoints ----------------------------------------------------------------------------


def _all_finite(model: nn.Module) -> bool:
    return all(torch.isfinite(p).all() for p in model.parameters())


def save_checkpoint(path: Path, model, optimizer, scheduler, ema, state: RunState, aug_gen, config: dict):
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "ema": ema.module.state_dict() if ema else None,
        "rng": {"torch": torch.get_rng_state(), "aug": aug_gen.get_state(), "python": random.getstate()},
        "state": dataclasses.asdict(state),
        "config": config,
    }
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(run_dir: Path) -> dict:
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} has no {CHECKPOINT} to resume from; start a run with -o {run_dir}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the same to the user
        raise ValueError(f"{path} is not a readable checkpoint ({err.__class__.__name__}: {err})") from None


def read_run_config(run_dir: str | Path) -> TrainConfig:
    path = Path(run_dir) / RUN_CONFIG
    if not path.is_file():
        raise FileNotFoundError(
            f"{run_dir} is not a run directory (no {RUN_CONFIG}); start one with `mobilenets train`"
        )
    data = json.loads(path.read_text())
    return TrainConfig(**data["config"])


def _init_architecture(config: TrainConfig, out: Path, resume: bool) -> dict:
    """The architecture (name, family, options) of the model directory ``config.init``."""
    if resume:
        return json.loads((out / RUN_CONFIG).read_text())["init_architecture"]
    arch = read_config(config.init)
    if config.model and config.model != arch.get("name"):
        raise ValueError(
            f"--init {config.init} holds {arch.get('name')!r} but --model is {config.model!r}; "
            "drop --model to train the init model's architecture"
        )
    return {"name": arch.get("name") or arch["family"], "family": arch["family"], "options": arch["options"]}


def _load_init_weights(model: nn.Module, init_dir: str) -> None:
    """Copy the weights of ``init_dir`` into ``model``; a classifier for another label count stays fresh."""
    source = load_model(init_dir).state_dict()
    target = model.state_dict()
    head = ("classifier.weight", "classifier.bias")
    if any(k not in source or k not in target or source[k].shape != target[k].shape for k in head):
        log.info("--init %s: a new classifier for %d classes", init_dir, model.num_classes)
        source = {k: v for k, v in source.items() if k not in head}
    missing, unexpected = model.load_state_dict(source, strict=False)
    if unexpected or set(missing) - set(head):
        raise ValueError(f"--init {init_dir} does not fit {model.name}: missing {missing}, unexpected {unexpected}")


# --- the loop ------------------------------------------------------------------------------------


def train(config: TrainConfig, *, resume: bool = False) -> dict:
    """Train ``config.model`` on ``config.data`` into ``config.output``; returns the run summary.

    With ``resume``, continues from ``output/checkpoint.pt``. Under torchrun, trains with DDP and
    only rank 0 writes files.
    """
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        if config.threads:
            torch.set_num_threads(config.threads)
        if config.deterministic:
            torch.use_deterministic_algorithms(True)
        return _train(config, resume)
    finally:  # process-wide settings go back as they were (train() may be one call of a longer program)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _train(config: TrainConfig, resume: bool) -> dict:
    started = time.time()
    out = Path(config.output)
    dist = setup_distributed(config.device)
    if config.accum_steps < 1:
        raise ValueError(f"accum_steps must be >= 1, got {config.accum_steps}")
    if (out / CHECKPOINT).exists() and not resume:
        raise ValueError(f"{out} already holds a run; continue it with --resume {out} or choose another -o")
    if resume:
        ckpt = load_checkpoint(out)
    # A run started from --init builds the init model's architecture (its padding, BN eps...), not the
    # registry default; run.json keeps it so that a resume does not need the init directory.
    init_arch = _init_architecture(config, out, resume) if config.init else None
    if init_arch:
        config = dataclasses.replace(config, model=config.model or init_arch["name"])
    elif not config.model:
        raise ValueError("train needs a model: give --model NAME (or --init MODEL_DIR to start from saved weights)")
    family = init_arch["family"] if init_arch else get_entry(config.model).builder.__name__
    recipe = config.resolved_recipe(family)
    if recipe.batch_size % (dist.world * config.accum_steps):
        raise ValueError(
            f"batch size {recipe.batch_size} must divide by processes x accum steps "
            f"({dist.world} x {config.accum_steps})"
        )

    variant = {"stem_stride": config.stem_stride} if config.stem_stride else {}
    if init_arch:
        probe = build_from_config({**init_arch, "options": {**init_arch["options"], **variant}})
    else:
        probe = create_model(config.model, num_classes=10, **variant)
    spec = load_data(
        config.data,
        resolution=config.resolution,
        in_chans=config.in_chans or (probe.in_chans if init_arch else None),
        train_limit=config.train_limit,
        val_limit=config.val_limit,
        min_size=probe.min_input_size,
    )
    spec.augment = dict(recipe.augment)
    n_cls = len(spec.labels)
    torch.manual_seed(config.seed)
    in_chans = spec.preprocessing.in_chans
    if init_arch:
        options = {**init_arch["options"], "num_classes": n_cls, "drop_rate": recipe.drop_rate, **variant}
        if options["in_chans"] != in_chans:
            raise ValueError(
                f"--init {config.init} takes {options['in_chans']}-channel input but the data is read with "
                f"{in_chans}; pass --in-chans {options['in_chans']}"
            )
        init_arch = {**init_arch, "options": options}
        model = build_from_config(init_arch)
        if not resume:
            _load_init_weights(model, config.init)
    else:
        model = create_model(config.model, num_classes=n_cls, in_chans=in_chans, drop_rate=recipe.drop_rate, **variant)
    model.labels, model.preprocessing = list(spec.labels), spec.preprocessing
    steps_per_epoch = len(spec.train) // recipe.batch_size
    if steps_per_epoch == 0:
        raise ValueError(
            f"the training split has {len(spec.train)} images, fewer than one batch of "
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
        "recipe": recipe.to_dict(),
        "labels": spec.labels,
        "preprocessing": spec.preprocessing.to_dict(),
        "world_size": dist.world,
    }
    if init_arch:
        run_record["init_architecture"] = init_arch
    if resume:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ema and ckpt["ema"] is not None:
            ema.module.load_state_dict(ckpt["ema"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        aug_gen.set_state(ckpt["rng"]["aug"])
        random.setstate(ckpt["rng"]["python"])
        state = RunState(**ckpt["state"])
        log.info("resuming %s at epoch %d, step %d", out, state.epoch, state.step)
    else:
        torch.manual_seed(config.seed + dist.rank)  # dropout differs per rank, data order does not
    if dist.main:
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
    eval_model = ema.module if ema else model
    writer = _tensorboard(out) if dist.main and config.tensorboard else None

    def checkpoint():
        if not _all_finite(model):
            raise TrainingDiverged(
                f"weights became non-finite at step {state.step}; {out / CHECKPOINT} keeps the "
                "last good state: lower --lr and --resume"
            )
        if dist.main:
            save_checkpoint(out / CHECKPOINT, model, optimizer, scheduler, ema, state, aug_gen, run_record["config"])
        dist.barrier()

    log.info(
        "training %s (%s params) on %s: %d train / %d %s images, %d classes, %dx%d, recipe %s, "
        "%d epochs x %d steps of %d",
        config.model,
        f"{sum(p.numel() for p in model.parameters()):,}",
        spec.train.source,
        len(spec.train),
        len(spec.val),
        spec.val.name,
        n_cls,
        *spec.preprocessing.input_size,
        recipe.name,
        recipe.epochs,
        steps_per_epoch,
        recipe.batch_size,
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    micro = recipe.batch_size // dist.world // config.accum_steps
    stopped_early = False
    for epoch in range(state.epoch, recipe.epochs):
        order = torch.randperm(len(spec.train), generator=torch.Generator().manual_seed(config.seed * 100003 + epoch))
        order = order[: steps_per_epoch * recipe.batch_size]
        net.train()
        t0, seen, loss_sum, correct, skipped = time.time(), 0, 0.0, 0, 0
        bar = _progress(config.progress and dist.main, steps_per_epoch, state.step_in_epoch, epoch, recipe.epochs)
        batches = _batches(
            spec,
            spec.train,
            order,
            recipe.batch_size,
            aug_gen,
            True,
            config.workers,
            (dist.rank, dist.world),
            state.step_in_epoch,
            config.seed * 7 + epoch * 1009 + state.step,
        )
        for x, y, bad in batches:
            skipped += bad
            x, y = x.to(dist.device), y.to(dist.device)
            if config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            parts = [(x[i :: config.accum_steps], y[i :: config.accum_steps]) for i in range(config.accum_steps)]
            for xi, yi in parts:
                if len(yi) == 0:
                    continue
                with torch.autocast(dist.device.type, dtype=torch.bfloat16, enabled=config.bf16):
                    logits = net(xi)
                loss = criterion(logits.float(), yi) * len(yi) / micro / config.accum_steps
                loss.backward()
                step_loss += loss.item()
                correct += (logits.argmax(1) == yi).sum().item()
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
            seen += len(y)
            loss_sum += step_loss * len(y)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    loss=f"{loss_sum / seen:.3f}",
                    acc=f"{100 * correct / seen:.1f}%",
                    img_s=f"{seen * dist.world / (time.time() - t0):.0f}",
                )
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
        state.train_seconds += epoch_seconds
        state.skipped += int(dist.all_sum(skipped))
        if stopped_early:
            checkpoint()
            break
        row = {
            "epoch": epoch + 1,
            "step": state.step,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": dist.all_sum(loss_sum) / max(1, dist.all_sum(seen)),
            "train_top1": 100 * dist.all_sum(correct) / max(1, dist.all_sum(seen)),
            "epoch_seconds": round(epoch_seconds, 2),
            "images_per_s": round(dist.all_sum(seen) / max(epoch_seconds, 1e-9), 1),
        }
        if dist.main:
            metrics = evaluate_split(
                eval_model,
                spec,
                spec.val,
                batch_size=max(256, recipe.batch_size),
                device=dist.device,
                channels_last=config.channels_last,
                bf16=config.bf16,
                workers=config.workers,
            )
            row.update(val_loss=metrics["loss"], val_top1=metrics["top1"], val_top5=metrics["top5"])
            log.info(
                "epoch %d/%d: train loss %.4f top-1 %.2f%% | %s loss %.4f top-1 %.2f%% top-5 %.2f%% | %.0fs, "
                "%.0f img/s",
                epoch + 1,
                recipe.epochs,
                row["train_loss"],
                row["train_top1"],
                spec.val.name,
                metrics["loss"],
                metrics["top1"],
                metrics["top5"],
                epoch_seconds,
                row["images_per_s"],
            )
            if metrics["top1"] > state.best_top1:
                state.best_top1, state.best_epoch = metrics["top1"], epoch + 1
                _save_best(eval_model, out, spec, recipe, config, metrics, epoch + 1)
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
        from .report import write_report

        summary = write_report(out, spec, state, recipe, config, wall_seconds=time.time() - started)
    if writer:
        writer.close()
    dist.barrier()
    return summary or {"step": state.step, "epoch": state.epoch, "stopped_early": stopped_early}


def _save_best(model, out: Path, spec: DataSpec, recipe: Recipe, config: TrainConfig, metrics: dict, epoch: int):
    meta = {
        "trained_on": config.data,
        "recipe": recipe.name,
        "epoch": epoch,
        "top1": round(metrics["top1"], 3),
        "top5": round(metrics["top5"], 3),
        "val_split": spec.val.name,
    }
    save_model(model, out / BEST_DIR, labels=list(spec.labels), preprocessing=spec.preprocessing, metadata=meta)


def _write_csv(path: Path, rows: list[dict]):
    keys = list(dict.fromkeys(k for row in rows for k in row))
    lines = [",".join(keys)] + [",".join(_fmt(row.get(k, "")) for k in keys) for row in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")


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
