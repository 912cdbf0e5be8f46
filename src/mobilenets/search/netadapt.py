"""NetAdapt (Yang et al., ECCV 2018, arXiv:1804.03230) with MobileNetV3's changes (P-V3 Sec 4.2).

Each iteration proposes, for every width slot of the current network (``plan.py``: the stem, one
block's expansion, one residual group, the last convs; for V1 each pointwise conv), the widest
narrowing (multiples of 8) whose predicted latency meets ``previous measured - delta * seed``;
carries the largest-L2 filters into it, fine-tunes it briefly on the train split and scores it on
a holdout carved from the train split (never the test set); keeps the proposal with the largest
``dAcc / |dLatency|`` (``criterion="slope"``, V3's rule) or the highest accuracy (``"accuracy"``,
NetAdapt's); and times the chosen network whole, interleaved with its predecessor. It stops at the
target latency. Every accepted network is a model directory (``step_NN``), and the search state is
written atomically after every proposal, so a killed search resumes where it was.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from torch import nn

from ..io import atomic_write_text, build_from_config, load_model, resolve_model_dir, save_model
from ..models.width import Layout, Slot, WidthPlan, narrow
from .plan import candidate_widths

log = logging.getLogger(__name__)

__all__ = ["CRITERIA", "LatencyModel", "Evaluator", "SearchSettings", "choose_width", "parse_target", "search",
           "select", "step_target"]  # fmt: skip

CRITERIA = ("slope", "accuracy")
STATE_FILE = "state.json"
HISTORY_FILE = "history.json"
PROPOSALS_DIR = "proposals"
STATE_VERSION = 1


class LatencyModel(Protocol):
    """What the search needs of a latency oracle (``latency.RuntimeLatency``, or a fake in tests)."""

    def predict(self, model: nn.Module) -> float: ...  # ms, calibrated

    def measure(self, models: dict[str, nn.Module]) -> dict[str, float]: ...  # ms, whole networks, interleaved

    def observe(self, name: str, model: nn.Module, measured_ms: float, predicted_ms: float | None = None) -> None: ...

    def report(self) -> dict: ...


class Evaluator(Protocol):
    """Holdout accuracy (``score``) and a short fine-tune followed by it (``finetune``, in place;
    ``key`` seeds it, so a proposal redone after a kill is fine-tuned identically)."""

    def score(self, model: nn.Module) -> float: ...

    def finetune(self, model: nn.Module, key: str) -> float: ...


@dataclass(frozen=True)
class SearchSettings:
    """``budget``: a fraction of the seed's measured latency (0 < f < 1) or, with ``budget_ms``, ms."""

    budget: float = 0.6
    budget_ms: bool = False
    delta: float = 0.05
    criterion: str = "slope"
    max_steps: int = 50

    def check(self) -> None:
        if self.criterion not in CRITERIA:
            raise ValueError(f"--criterion must be one of {', '.join(CRITERIA)}, got {self.criterion!r}")
        if not 0 < self.delta < 1:
            raise ValueError(f"--delta is a fraction of the seed's latency per step, in (0, 1); got {self.delta}")
        if self.budget <= 0 or (not self.budget_ms and self.budget >= 1):
            raise ValueError(f"--target must be a fraction of the seed's latency in (0, 1) or milliseconds such as "
                             f"'2.5ms', got {self.budget}")  # fmt: skip
        if self.max_steps < 1:
            raise ValueError(f"--max-steps must be >= 1, got {self.max_steps}")

    def budget_of(self, seed_ms: float) -> float:
        return self.budget if self.budget_ms else self.budget * seed_ms


def parse_target(text: str | float) -> tuple[float, bool]:
    """``0.6`` (a fraction of the seed's latency) or ``"2.5ms"``: (value, is_ms)."""
    raw = str(text).strip().lower()
    is_ms = raw.endswith("ms")
    try:
        value = float(raw[:-2] if is_ms else raw)
    except ValueError:
        raise ValueError(f"--target takes a fraction of the seed's latency such as 0.6, or milliseconds such as "
                         f"2.5ms; got {text!r}") from None  # fmt: skip
    if not math.isfinite(value) or value <= 0 or (not is_ms and value >= 1):
        raise ValueError(
            f"--target must be a fraction in (0, 1) such as 0.6, or milliseconds such as 2.5ms; got {text!r}"
        )
    return value, is_ms


def step_target(prev_measured_ms: float, seed_ms: float, delta: float, budget_ms: float) -> float:
    """The schedule (NetAdapt Sec 3.1, V3's constant delta): previous measured - delta x seed, not below the budget."""
    return max(prev_measured_ms - delta * seed_ms, budget_ms)


def choose_width(plan: WidthPlan, layout: Layout, slot: Slot, fits: Callable[[WidthPlan], bool]):
    """NetAdapt's ChooseNumFilters: the widest narrowing of ``slot`` whose plan ``fits`` (latency is
    taken to fall with width: a bisection over the multiples of 8). None if not even the narrowest fits."""
    candidates = candidate_widths(plan, layout, slot)
    if not candidates or not fits(candidates[-1][1]):
        return None
    lo, hi = 0, len(candidates) - 1  # candidates[hi] fits; find the first (widest) that does
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(candidates[mid][1]):
            hi = mid
        else:
            lo = mid + 1
    return candidates[lo]


def select(proposals: list[dict], prev_top1: float, prev_ms: float, criterion: str) -> int | None:
    """Index of the proposal to keep: the largest dAcc/|dLatency| (P-V3 Sec 4.2) or the highest accuracy
    (NetAdapt); the first on ties. Skipped proposals never win."""
    best, best_score = None, -math.inf
    for i, p in enumerate(proposals):
        if p.get("skipped"):
            continue
        if criterion == "slope":
            score = (p["holdout_top1"] - prev_top1) / max(prev_ms - p["predicted_ms"], 1e-9)
        else:
            score = p["holdout_top1"]
        if score > best_score:
            best, best_score = i, score
    return best


# --- the loop ----------------------------------------------------------------------------------


def _write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def _step_dir(i: int) -> str:
    return f"step_{i:02d}"


def _save(model: nn.Module, directory: Path, info: dict) -> None:
    model.metadata = {**(getattr(model, "metadata", None) or {}), "netadapt": info}
    save_model(model, directory, overwrite=True)


def _settings_changed(saved: dict, settings: SearchSettings) -> str | None:
    for key, value in dataclasses.asdict(settings).items():
        if key != "max_steps" and saved.get(key) != value:
            return f"--{key.replace('_', '-')} cannot change on --resume (the search has {saved.get(key)!r})"
    return None


def search(
    seed: nn.Module,
    out: str | os.PathLike,
    latency: LatencyModel,
    evaluator: Evaluator,
    settings: SearchSettings = SearchSettings(),
    *,
    resume: bool = False,
    on_proposal: Callable[[dict], None] | None = None,
    progress: bool = False,
) -> dict:
    """Run (or resume) NetAdapt from ``seed`` into the directory ``out``; returns the state (see history.json).

    ``out`` must be new or empty unless ``resume``. ``on_proposal`` is called after each proposal's
    state is written (tests kill the search there).
    """
    settings.check()
    out = Path(out)
    state_path = out / STATE_FILE
    if resume:
        if not state_path.is_file():
            raise FileNotFoundError(f"{out} holds no NetAdapt search ({STATE_FILE} is missing); start one with -o")
        state = json.loads(state_path.read_text())
        changed = _settings_changed(state["settings"], settings)
        if changed:
            raise ValueError(changed)
        state["settings"]["max_steps"] = settings.max_steps
    else:
        out.mkdir(parents=True, exist_ok=True)
        layout = Layout.of(seed)  # refuse an unsupported family before anything is written
        seed.eval()
        seed_ms = latency.measure({"seed": seed})["seed"]
        latency.observe(str(out.absolute() / _step_dir(0)), seed, seed_ms)
        seed_top1 = evaluator.score(seed)
        plan = WidthPlan.of(seed)
        info = {"step": 0, "plan": plan.as_dict(), "measured_ms": seed_ms, "holdout_top1": seed_top1}
        _save(seed, out / _step_dir(0), info)
        state = {
            "version": STATE_VERSION,
            "settings": dataclasses.asdict(settings),
            "slots": {s.id: layout.describe(s) for s in layout.slots()},
            "seed": {**info, "dir": _step_dir(0)},
            "seed_ms": seed_ms,
            "budget_ms": settings.budget_of(seed_ms),
            "steps": [],
            "current": None,
            "done": False,
            "stop_reason": None,
        }
        _write_json(state_path, state)
        log.info("seed: %.3f ms measured, holdout top-1 %.2f%%; target %.3f ms", seed_ms, seed_top1,
                 state["budget_ms"])  # fmt: skip

    while not state["done"]:
        _iterate(state, out, latency, evaluator, settings, on_proposal, progress)
        _write_json(state_path, state)
        write_history(out, state, latency)
    write_history(out, state, latency)
    return state


def _last(state: dict) -> dict:
    return state["steps"][-1] if state["steps"] else state["seed"]


def _iterate(state, out: Path, latency, evaluator, settings, on_proposal, progress) -> None:
    from ..progress import progress as with_bar

    prev = _last(state)
    if prev["measured_ms"] <= state["budget_ms"]:
        state["done"], state["stop_reason"] = True, "target reached"
        return
    if len(state["steps"]) >= state["settings"]["max_steps"]:
        state["done"], state["stop_reason"] = True, f"max_steps ({state['settings']['max_steps']}) reached"
        return
    iteration = len(state["steps"]) + 1
    current = load_model(out / prev["dir"])
    layout = Layout.of(current)
    plan = WidthPlan.of(current)
    if state["current"] is None or state["current"]["iteration"] != iteration:
        target = step_target(prev["measured_ms"], state["seed_ms"], settings.delta, state["budget_ms"])
        state["current"] = {"iteration": iteration, "target_ms": target, "proposals": [], "chosen": None}
        shutil.rmtree(out / PROPOSALS_DIR, ignore_errors=True)  # an earlier iteration's leftovers
    cur = state["current"]
    done = {p["slot"] for p in cur["proposals"]}
    slots = layout.slots()
    proposals_dir = out / PROPOSALS_DIR
    for slot in with_bar(slots, f"step {iteration}", enabled=progress, unit="proposal"):
        if slot.id in done or cur["chosen"] is not None:
            continue
        record = {"slot": slot.id, "what": layout.describe(slot), "width_from": plan.get(slot)}
        predicted: dict[int, float] = {}

        def fits(candidate: WidthPlan, slot=slot, predicted=predicted) -> bool:
            ms = latency.predict(build_from_config(candidate.config(current)))  # widths only: no weights needed
            predicted[candidate.get(slot)] = ms
            return ms <= cur["target_ms"]

        choice = choose_width(plan, layout, slot, fits)
        if choice is None:
            record["skipped"] = "no narrower width meets the step's latency target"
        else:
            width, new_plan = choice
            model = narrow(current, new_plan)
            top1 = evaluator.finetune(model, f"{iteration}:{slot.id}")
            record.update(width_to=width, plan=new_plan.as_dict(), predicted_ms=predicted[width], holdout_top1=top1,
                          dir=f"{PROPOSALS_DIR}/{slot.id}")  # fmt: skip
            _save(model, proposals_dir / slot.id, {"step": iteration, "proposal": slot.id, **record})
        cur["proposals"].append(record)
        _write_json(out / STATE_FILE, state)  # every proposal survives a kill
        log.info("step %d, %s: %s", iteration, slot.id, record.get("skipped") or
                 f"{record['width_from']} -> {record['width_to']}, predicted {record['predicted_ms']:.3f} ms, "
                 f"holdout top-1 {record['holdout_top1']:.2f}%")  # fmt: skip
        if on_proposal:
            on_proposal(record)

    if cur["chosen"] is None:
        index = select(cur["proposals"], prev["holdout_top1"], prev["measured_ms"], settings.criterion)
        if index is None:
            state["done"], state["stop_reason"] = True, "no proposal meets the step's latency target"
            state["current"] = None
            shutil.rmtree(proposals_dir, ignore_errors=True)
            return
        chosen = cur["proposals"][index]
        model = load_model(out / chosen["dir"])
        # Verified whole, interleaved with its predecessor (noise falls on both alike).
        times = latency.measure({"prev": current, "new": model})
        latency.observe(str(out.absolute() / _step_dir(iteration)), model, times["new"], chosen["predicted_ms"])
        cur["chosen"] = {**chosen, "measured_ms": times["new"], "prev_remeasured_ms": times["prev"]}
        _write_json(out / STATE_FILE, state)
    chosen = cur["chosen"]
    step_dir = out / _step_dir(iteration)
    source = out / chosen["dir"]
    if source.exists():
        if step_dir.exists():
            shutil.rmtree(step_dir)
        model = load_model(source)
        step = {"step": iteration, "target_ms": cur["target_ms"], "chosen": chosen["slot"], "plan": chosen["plan"],
                "predicted_ms": chosen["predicted_ms"], "measured_ms": chosen["measured_ms"],
                "prev_remeasured_ms": chosen["prev_remeasured_ms"], "holdout_top1": chosen["holdout_top1"]}  # fmt: skip
        _save(model, step_dir, step)
    else:  # killed after the move: the step directory is complete
        step = load_model(step_dir).metadata["netadapt"]
    state["steps"].append({**step, "dir": _step_dir(iteration), "proposals": cur["proposals"]})
    state["current"] = None
    _write_json(out / STATE_FILE, state)
    shutil.rmtree(proposals_dir, ignore_errors=True)
    log.info(
        "step %d: kept %s (%s), measured %.3f ms (predicted %.3f), holdout top-1 %.2f%%",
        iteration,
        chosen["slot"],
        chosen["what"],
        chosen["measured_ms"],
        chosen["predicted_ms"],
        chosen["holdout_top1"],
    )


def write_history(out: Path, state: dict, latency: LatencyModel, extra: dict | None = None) -> dict:
    """history.json: the seed, every step (its proposals, chosen plan, predicted and measured latency,
    holdout accuracy), the latency table's error, and ``extra`` (uniform baselines, finish)."""
    path = out / HISTORY_FILE
    old = json.loads(path.read_text()) if path.is_file() else {}
    history = {
        **old,
        "settings": state["settings"],
        "slots": state["slots"],
        "seed": state["seed"],
        "seed_ms": state["seed_ms"],
        "budget_ms": state["budget_ms"],
        "steps": state["steps"],
        "done": state["done"],
        "stop_reason": state["stop_reason"],
        "latency_table": latency.report(),
        **(extra or {}),
    }
    _write_json(path, history)
    return history


# --- the real evaluator: a short fine-tune on the train split, top-1 on a holdout carved from it -------


def carve_holdout(spec, holdout: int, seed: int = 0):
    """(train part, holdout) of ``spec.train``: a fixed random ``holdout`` images, the rest for fine-tuning."""
    import torch

    from ..data.classification import Split

    n = len(spec.train)
    if not 0 < holdout < n:
        raise ValueError(f"--holdout must be between 1 and {n - 1} (the training split has {n} images), got {holdout}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    parts = []
    for name, idx in (("train", order[holdout:]), ("holdout", order[:holdout])):
        split = spec.train
        if split.images is not None:
            parts.append(Split(name, split.labels, split.targets[idx], images=split.images[idx], source=split.source))
        else:
            subset = torch.utils.data.Subset(split.dataset, idx.tolist())
            parts.append(Split(name, split.labels, split.targets[idx], dataset=subset, source=split.source))
    return parts[0], parts[1]


class HoldoutFineTune:
    """NetAdapt's ShortTermFineTune: ``steps`` SGD steps (the recipe's optimizer, ``lr`` cosine to 0) on the
    train part, then top-1 on the holdout."""

    def __init__(self, spec, train_part, holdout, *, recipe, steps: int, batch_size: int, lr: float,
                 seed: int = 0, workers: int = 0):  # fmt: skip
        if steps < 0:
            raise ValueError(f"--steps must be >= 0, got {steps}")
        self.spec, self.train_part, self.holdout = spec, train_part, holdout
        self.recipe, self.steps, self.batch_size, self.lr = recipe, steps, batch_size, lr
        self.seed, self.workers = seed, workers

    def score(self, model: nn.Module) -> float:
        from ..tasks.classification import evaluate_split

        return evaluate_split(model, self.spec, self.holdout, batch_size=256, workers=self.workers)["top1"]

    def finetune(self, model: nn.Module, key: str) -> float:
        import hashlib

        import torch
        import torch.nn.functional as F

        from ..tasks.classification import _batches
        from ..training.optim import make_optimizer

        seed = int(hashlib.sha1(f"{self.seed}:{key}".encode()).hexdigest()[:8], 16)
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        optimizer = make_optimizer(model, self.recipe.replace(lr=self.lr))
        model.train()
        step = 0
        while step < self.steps:
            order = torch.randperm(len(self.train_part), generator=generator)
            for x, y, _ in _batches(self.spec, self.train_part, order, self.batch_size, generator, True, self.workers,
                                    None):  # fmt: skip
                if step >= self.steps:
                    break
                if len(y) == 0:
                    continue
                for group in optimizer.param_groups:
                    group["lr"] = self.lr * 0.5 * (1 + math.cos(math.pi * step / self.steps))
                loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
        model.eval()
        return self.score(model)


# --- the whole job: search, uniform-width baselines, finish, Pareto plot ------------------------------

CONFIG_FILE = "adapt.json"
FINISHES = ("none", "finetune", "scratch")
UNIFORM_GRID = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.35)
SAFE_ON_RESUME = ("progress", "max_steps", "workers")


@dataclass
class AdaptConfig:
    """Everything that defines an ``adapt`` job (saved as ADAPT_DIR/adapt.json; ``--resume`` reads it back).

    ``model``: a model directory or a training run directory (its best model). ``target``: a
    fraction of the seed's measured latency (0.6) or milliseconds ("2.5ms"). ``steps``: the short
    fine-tune of each proposal (``batch_size``, ``lr``: None = a tenth of the recipe's, scaled to the
    batch). ``uniform``: width multipliers of the seed to compare with ("auto": the two whose
    predicted latency brackets the adapted network's; "" none). ``finish``: "finetune" (the recipe,
    from the adapted weights), "scratch" (the recipe, from random weights) or "none"; the uniform
    baselines get the same.
    """

    model: str
    output: str
    data: str = "fashion-mnist"
    target: str = "0.6"
    runtime: str = "onnxruntime"
    threads: int = 1
    resolution: int | None = None
    delta: float = 0.05
    criterion: str = "slope"
    steps: int = 40
    batch_size: int = 128
    lr: float | None = None
    holdout: int = 5000
    train_limit: int = 0
    val_limit: int = 0
    recipe: str = "fast"
    finish: str = "finetune"
    finish_epochs: int | None = None
    uniform: str = "auto"
    max_steps: int = 50
    rounds: int = 5
    round_seconds: float = 0.2
    table: str | None = None
    seed: int = 0
    workers: int = 0
    progress: bool = True

    def settings(self) -> SearchSettings:
        value, is_ms = parse_target(self.target)
        return SearchSettings(value, is_ms, self.delta, self.criterion, self.max_steps)

    def check(self) -> None:
        """Every option in range, before anything is loaded or written: one line naming the option."""
        self.settings().check()
        if self.finish not in FINISHES:
            raise ValueError(f"--finish must be one of {', '.join(FINISHES)}, got {self.finish!r}")
        self.multipliers()
        from ..preprocessing import MAX_INPUT_SIDE

        whole = {"steps": (1, None), "batch_size": (1, None), "holdout": (1, None), "train_limit": (0, None),
                 "val_limit": (0, None), "rounds": (1, None), "threads": (1, None), "seed": (0, None),
                 "workers": (0, None), "resolution": (1, MAX_INPUT_SIDE), "finish_epochs": (1, None)}  # fmt: skip
        for name, (low, high) in whole.items():
            value = getattr(self, name)
            if value is None and name in ("resolution", "finish_epochs"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low or (high and value > high):
                bounds = f"between {low} and {high}" if high else f">= {low}"
                raise ValueError(f"--{name.replace('_', '-')} must be a whole number {bounds}, got {value!r}")
        for name, optional in (("lr", True), ("round_seconds", False)):
            value = getattr(self, name)
            if value is None and optional:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive finite number, got {value!r}")

    def multipliers(self) -> list[float] | None:
        """The uniform baselines' width multipliers; None: chosen after the search ("auto")."""
        if self.uniform == "auto":
            return None
        try:
            values = [float(v) for v in str(self.uniform).split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--uniform takes 'auto' or a comma list of width multipliers such as 0.75,0.5; "
                             f"got {self.uniform!r}") from None  # fmt: skip
        if any(not 0 < v < 1 for v in values):
            raise ValueError(f"--uniform multipliers must be in (0, 1), got {self.uniform!r}")
        return values


def read_adapt_config(directory: str | os.PathLike) -> AdaptConfig:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} holds no NetAdapt job ({CONFIG_FILE} is missing); start one with -o")
    try:
        saved = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); restore it or start the job again with -o") from None
    known = {f.name for f in dataclasses.fields(AdaptConfig)}
    unknown = sorted(set(saved) - known) if isinstance(saved, dict) else None
    if unknown is None or unknown or not {"model", "output"} <= set(saved):
        what = f"unknown fields {unknown}" if unknown else "not a NetAdapt job's options"
        raise ValueError(f"{path} holds {what}; restore it or start the job again with -o")
    config = AdaptConfig(**saved)
    try:
        config.check()
    except ValueError as err:  # written by a version that did not check it: the job could never run
        raise ValueError(f"{path}: {err}; this job cannot resume: start it again with -o (a new or empty "
                         "directory)") from None  # fmt: skip
    return config


def _check_resume(saved: AdaptConfig, config: AdaptConfig) -> None:
    for f in dataclasses.fields(AdaptConfig):
        if f.name in SAFE_ON_RESUME or f.name == "output":
            continue
        if getattr(saved, f.name) != getattr(config, f.name):
            raise ValueError(f"--{f.name.replace('_', '-')} cannot change on --resume (the job has "
                             f"{getattr(saved, f.name)!r}, given {getattr(config, f.name)!r})")  # fmt: skip


def adapt(config: AdaptConfig, *, resume: bool = False) -> dict:
    """NetAdapt ``config.model`` for a latency target on ``config.runtime``; returns history.json's content.

    Writes into ``config.output`` (new or empty): adapt.json, state.json, history.json,
    latency_table.json, step_NN/ (the seed and every accepted network, model directories),
    uniform_M/ (baselines), finish_*/ (training runs of ``finish``), pareto.png.
    """
    from ..data.classification import load_data
    from ..io import check_output
    from ..training.recipes import get_recipe
    from .latency import RuntimeLatency, Target

    config.check()
    out = Path(config.output)
    if resume:
        _check_resume(read_adapt_config(out), config)
    else:
        check_output(out, what="a NetAdapt job", hint="choose a new or empty directory, or --resume it")
    seed = load_model(resolve_model_dir(config.model))
    Layout.of(seed)
    pre = seed.preprocessing
    if pre is None:
        raise ValueError(f"{config.model} has no preprocessing in its config.json; NetAdapt needs the input it was "
                         "trained for (train or convert it with mobilenets)")  # fmt: skip
    if config.resolution is not None and config.resolution < seed.min_input_size:
        raise ValueError(f"--resolution {config.resolution} is too small for {seed.name}: it takes inputs of at "
                         f"least {seed.min_input_size}x{seed.min_input_size}")  # fmt: skip
    resolution = (config.resolution, config.resolution) if config.resolution else tuple(pre.input_size)
    target = Target(config.runtime, config.threads, resolution, seed.in_chans, config.rounds, config.round_seconds)
    target.check()
    spec = load_data(config.data, preprocessing=pre, train_limit=config.train_limit, val_limit=config.val_limit)
    if len(spec.labels) != seed.num_classes:
        raise ValueError(f"--data {config.data} has {len(spec.labels)} classes but {config.model} was trained for "
                         f"{seed.num_classes}; adapt it on the data it was trained on")  # fmt: skip
    train_part, holdout = carve_holdout(spec, config.holdout, config.seed)
    recipe = get_recipe(config.recipe, seed.family)
    lr = config.lr if config.lr is not None else 0.1 * recipe.lr * config.batch_size / recipe.batch_size
    evaluator = HoldoutFineTune(
        spec,
        train_part,
        holdout,
        recipe=recipe,
        steps=config.steps,
        batch_size=config.batch_size,
        lr=lr,
        seed=config.seed,
        workers=config.workers,
    )
    latency = RuntimeLatency(target, config.table or out / "latency_table.json")  # refuses a foreign --table
    if not resume:
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / CONFIG_FILE, dataclasses.asdict(config))
    log.info(
        "NetAdapt %s on %s (%d thread%s, %dx%d); holdout %d of %d training images",
        seed.name,
        config.runtime,
        config.threads,
        "" if config.threads == 1 else "s",
        *resolution,
        len(holdout),
        len(spec.train),
    )
    state = search(seed, out, latency, evaluator, config.settings(), resume=resume and (out / STATE_FILE).is_file(),
                   progress=config.progress)  # fmt: skip
    history = json.loads((out / HISTORY_FILE).read_text())
    history["target"] = {"runtime": config.runtime, "threads": config.threads, "resolution": list(resolution),
                         "machine": latency.fingerprint}  # fmt: skip
    final = _last(state)
    adapted = load_model(out / final["dir"])
    history["uniform"] = _uniform(config, seed, adapted, final, out, latency, evaluator, history.get("uniform"))
    write_history(out, state, latency, {"target": history["target"], "uniform": history["uniform"]})
    if "comparison" not in history:
        # One interleaved timing of every accepted network and baseline: the plot's latencies share conditions.
        dirs = [s["dir"] for s in [state["seed"], *state["steps"]]] + [u["dir"] for u in history["uniform"]]
        measured = latency.measure({d: load_model(out / d) for d in dirs})
        measured.update(seed=measured[state["seed"]["dir"]], adapted=measured[final["dir"]])
        history["comparison"] = {"measured_ms": measured}
        write_history(out, state, latency, {k: history[k] for k in ("target", "uniform", "comparison")})
    if config.finish != "none":
        history["finish"] = _finish(config, spec, seed, out, final, history, state, latency)
    history = write_history(out, state, latency, {k: history[k] for k in ("target", "uniform", "comparison", "finish")
                                                  if k in history})  # fmt: skip
    plot_pareto(history, out / "pareto.png")
    return history


def uniform_plan(seed: nn.Module, mult: float) -> WidthPlan:
    """The seed's family at ``mult`` times its width multiplier (the family's own rule: e.g. V3 keeps the
    pre-logits width), when that has the seed's structure and fits inside it; else every width x ``mult``."""
    layout, plan = Layout.of(seed), WidthPlan.of(seed)
    options = {k: v for k, v in seed.config["options"].items() if k not in ("stem_chs", "blocks", "head_chs")}
    if seed.family == "mobilenet_v3":
        options.pop("num_features", None)
    options["width_mult"] = options.get("width_mult", 1.0) * mult
    try:
        family = WidthPlan.of(build_from_config({**seed.config, "options": options}))
    except ValueError:
        family = None
    fits = (
        family is not None
        and len(family.groups) == len(plan.groups)
        and len(family.exp) == len(plan.exp)
        and family.problem(layout) is None
        and all(a <= b for a, b in zip(family.groups + family.exp, plan.groups + plan.exp, strict=True))
        and family.final <= plan.final
        and family.features <= plan.features
    )
    return family if fits else plan.scaled(layout, mult)


def _uniform(config, seed, adapted, final, out, latency, evaluator, done: list | None) -> list[dict]:
    """Uniform width multipliers of the seed (largest-L2 filters kept, the same short fine-tune)."""
    done = list(done or [])
    mults = config.multipliers()
    if mults is None:  # the two grid multipliers whose predicted latency brackets the adapted network's
        mults = []
        for m in UNIFORM_GRID:
            ms = latency.predict(build_from_config(uniform_plan(seed, m).config(seed)))
            mults = [m] if not mults else [mults[-1], m]
            if ms <= final["measured_ms"]:
                break
    for m in mults:
        name = f"uniform_{m:g}"
        if any(u["name"] == name for u in done):
            continue
        uplan = uniform_plan(seed, m)
        model = narrow(seed, uplan)
        predicted = latency.predict(model)
        top1 = evaluator.finetune(model, name)
        record = {"name": name, "width_mult": m, "plan": uplan.as_dict(), "predicted_ms": predicted,
                  "holdout_top1": top1, "dir": name}  # fmt: skip
        _save(model, out / name, record)
        done.append(record)
        _write_json(out / HISTORY_FILE, {**json.loads((out / HISTORY_FILE).read_text()), "uniform": done})
        log.info("%s: predicted %.3f ms, holdout top-1 %.2f%%", name, predicted, top1)
    return done


def _finish(config, spec, seed, out, final, history, state, latency) -> dict:
    """The adapted network and the uniform baselines trained by the same recipe; top-1 on the data's
    evaluation split (the test set: touched here, for the report, and never during the search)."""
    from ..io import is_model_dir
    from ..tasks.classification import evaluate_split
    from ..training.checkpoint import FINAL_DIR, is_run_dir
    from ..training.engine import TrainConfig, train

    result = dict(history.get("finish") or {})
    if "seed" not in result:
        metrics = evaluate_split(seed, spec, spec.val, batch_size=256, workers=config.workers)
        result["seed"] = {"top1": metrics["top1"], "split": spec.val.name, "dir": state["seed"]["dir"]}
    jobs = [("adapted", final["dir"])] + [(u["name"], u["dir"]) for u in history["uniform"]]
    for name, source in jobs:
        if name in result:
            continue
        init = out / source
        if config.finish == "scratch":  # the same architecture from random weights (P-V3 Sec 4.2)
            init = out / f"scratch_init_{name}"
            if not is_model_dir(init):
                model = load_model(out / source)
                fresh = build_from_config(model.config)
                fresh.labels, fresh.preprocessing, fresh.metadata = model.labels, model.preprocessing, {}
                save_model(fresh, init, overwrite=True)
        run_dir = out / f"finish_{name}"
        train_config = TrainConfig(
            model=None, output=str(run_dir), data=config.data, init=str(init), recipe=config.recipe,
            epochs=config.finish_epochs, resolution=spec.preprocessing.input_size[0],
            in_chans=spec.preprocessing.in_chans, train_limit=config.train_limit, val_limit=config.val_limit,
            seed=config.seed, workers=config.workers, progress=config.progress, tensorboard=False,
        )  # fmt: skip
        summary = train(train_config, resume=is_run_dir(run_dir))
        result[name] = {"top1": summary["top1"], "split": summary.get("split"), "dir": f"{run_dir.name}/{FINAL_DIR}",
                        "epochs": summary.get("epochs"), "how": config.finish}  # fmt: skip
        _write_json(out / HISTORY_FILE, {**json.loads((out / HISTORY_FILE).read_text()), "finish": result})
        log.info("finish %s (%s): top-1 %.2f%% on %s", name, config.finish, summary["top1"], summary.get("split"))
    return result


MIN_SPAN = 2.0  # points of top-1: a smaller spread is not stretched to the panel's full height


def _min_span(ax, values: list[float]) -> None:
    lo, hi = min(values), max(values)
    if hi - lo < MIN_SPAN:
        mid = (lo + hi) / 2
        ax.set_ylim(mid - 0.6 * MIN_SPAN, mid + 0.6 * MIN_SPAN)


def _label(ax, text: str, xy, *, below: bool = False, **style) -> None:
    """``text`` just above (or below) the point ``xy``, centred on it, off the marker and the line."""
    ax.annotate(text, xy, xytext=(0, -13 if below else 9), textcoords="offset points", ha="center",
                va="top" if below else "bottom", fontsize=8, **style)  # fmt: skip


def plot_pareto(history: dict, path: str | os.PathLike) -> Path | None:
    """Accuracy vs measured latency: the adapted family against uniform width multipliers, same axes.

    Left: holdout top-1 after the short fine-tunes (the search's view). Right (after ``finish``): top-1
    on the evaluation split after the same recipe, latencies from one interleaved timing of all of them;
    the seed, which ``finish`` evaluates but does not train (no "how" in its record), is a hollow grey
    marker marked "not finished". Neither axis stretches less than ``MIN_SPAN`` points to full height.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("no matplotlib: no %s (`pip install matplotlib`)", path)
        return None
    from ..io import atomic_write

    fig = pareto_figure(plt, history)
    written = atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return written


def pareto_figure(plt, history: dict):
    """The figure of ``plot_pareto``."""
    finish = history.get("finish")
    fig, axes = plt.subplots(1, 2 if finish else 1, figsize=(12 if finish else 6.5, 4.8), squeeze=False)
    ax = axes[0][0]
    steps = [{**history["seed"], "dir": history["seed"].get("dir", "step_00")}] + history["steps"]
    measured = (history.get("comparison") or {}).get("measured_ms", {})
    step_ms = [measured.get(s["dir"], s["measured_ms"]) for s in steps]  # the common timing where there is one
    step_top1 = [s["holdout_top1"] for s in steps]
    ax.plot(step_ms, step_top1, "o-", color="C0", label="NetAdapt steps (one network, narrowed)")
    for s, ms, top1 in zip(steps, step_ms, step_top1, strict=True):
        _label(ax, "seed" if s["step"] == 0 else f"step {s['step']}", (ms, top1), color="C0")
    uniform = [u for u in history.get("uniform", []) if u["name"] in measured]
    if uniform:
        ax.plot([measured[u["name"]] for u in uniform], [u["holdout_top1"] for u in uniform], "s--", color="C1",
                label="uniform width multipliers of the seed")  # fmt: skip
        for u in uniform:
            _label(ax, f"x{u['width_mult']:g}", (measured[u["name"]], u["holdout_top1"]), below=True, color="C1")
    ax.axvline(history["budget_ms"], color="gray", lw=0.8, ls=":", label="latency target")
    ax.set(xlabel="measured latency (ms)", ylabel="holdout top-1 (%)", title="search (short fine-tunes)")
    _min_span(ax, step_top1 + [u["holdout_top1"] for u in uniform])
    ax.margins(x=0.12, y=0.15)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    if finish:
        ax = axes[0][1]
        names = [n for n in ["seed", "adapted"] + [u["name"] for u in uniform] if n in finish and n in measured]
        how = next((f["how"] for f in finish.values() if "how" in f), "")
        for n in names:
            x, y, done = measured[n], finish[n]["top1"], "how" in finish[n]
            name = n.replace("uniform_", "uniform x")
            if n == "adapted":
                ax.plot(x, y, "o", color="C0", ms=9)
            elif done:
                ax.plot(x, y, "s", color="C1", ms=8)
            else:  # evaluated as it was, beside networks trained further: not comparable with them
                ax.plot(x, y, "^", mfc="none", mec="gray", ms=9)
                name += " (not finished)"
            _label(ax, f"{name}\n{y:.2f}%", (x, y), color="black" if done else "gray")
        ax.set(
            xlabel="measured latency (ms)",
            ylabel=f"top-1 (%) on {finish['seed'].get('split')}",
            title=f"finished ({how}, same recipe)",
        )
        ax.axvline(history["budget_ms"], color="gray", lw=0.8, ls=":")
        _min_span(ax, [finish[n]["top1"] for n in names])
        ax.margins(x=0.2, y=0.2)
        ax.grid(alpha=0.3)
    target = history.get("target", {})
    fig.suptitle(f"NetAdapt on {target.get('runtime', '?')}, {target.get('threads', '?')} thread(s): "
                 f"{(target.get('machine') or {}).get('cpu', '')}", fontsize=9)  # fmt: skip
    fig.tight_layout()
    return fig
