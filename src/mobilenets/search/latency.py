"""Latency on the user's runtime: block-level tables filled lazily, calibration, whole-network timing.

NetAdapt (Yang et al. 2018, Sec 3.2) estimates a proposal's latency as the sum of per-layer
look-up tables. Here a table entry is one *block* (the stem, each block, the tail after the last
block) exported and run alone on the deploy runtime at batch 1 and the given thread count, since
runtimes fuse conv+BN+activation inside a block (nn-Meter's lesson) and eager PyTorch at small
inputs does not depend on widths at all (heads.md Sec 1.6). Entries are measured the first time a
proposal needs them, cached as JSON with the machine's fingerprint (CPU model and flags, runtime
versions), and their sum is calibrated as ``a * sum + b`` against whole-network timings of every
accepted network. Whole networks are timed interleaved (``deploy/timing.py``) with the network
they replace.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..deploy.timing import summarize, time_interleaved
from ..io import atomic_write_text

log = logging.getLogger(__name__)

# name -> (what is timed, the package it needs)
RUNTIMES = {
    "onnxruntime": ("ONNX Runtime CPU, fp32, BN folded", "onnxruntime"),
    "onnxruntime-int8": ("ONNX Runtime CPU, INT8 QDQ (calibrated on random inputs: timing only)", "onnxruntime"),
    "openvino": ("OpenVINO CPU, fp32", "openvino"),
    "openvino-int8": ("OpenVINO CPU, INT8 QDQ (calibrated on random inputs: timing only)", "openvino"),
    "torch": ("PyTorch eager (at small inputs its latency barely depends on widths)", "torch"),
}
TABLE_VERSION = 1
ONNX_OPSET = 17


@dataclass(frozen=True)
class Target:
    """Where latency is measured: runtime, thread count, input (batch 1), and how long each timing runs."""

    runtime: str = "onnxruntime"
    threads: int = 1
    resolution: tuple[int, int] = (224, 224)
    in_chans: int = 3
    rounds: int = 5
    round_seconds: float = 0.2

    def check(self) -> None:
        from ..deploy.runtimes import available

        if self.runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {self.runtime!r}; valid: {', '.join(RUNTIMES)}")
        package = RUNTIMES[self.runtime][1]
        if package != "torch" and not available(package):
            raise ValueError(f"runtime {self.runtime!r} needs {package}, which is not installed; "
                             f"`pip install {package}` or choose another --runtime")  # fmt: skip
        cpus = os.cpu_count() or 1
        if not 1 <= self.threads <= cpus:
            raise ValueError(f"--threads must be between 1 and {cpus} (this machine's CPUs), got {self.threads}")
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or self.rounds < 1:
            raise ValueError(f"--rounds must be a whole number >= 1, got {self.rounds!r}")
        if not 0 < self.round_seconds < float("inf"):  # also refuses nan
            raise ValueError(f"--round-seconds must be a positive finite number, got {self.round_seconds!r}")

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (1, self.in_chans, *self.resolution)


def fingerprint(target: Target) -> dict:
    """What a table's entries depend on besides the blocks: the CPU, the runtime's version, threads."""
    from ..deploy.peak import cpu_features

    cpu = cpu_features()
    versions = {"torch": torch.__version__}
    for name in ("onnxruntime", "openvino"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    return {"cpu": cpu.model, "flags": list(cpu.flags), "cpus": os.cpu_count(), "versions": versions,
            "runtime": target.runtime, "threads": target.threads}  # fmt: skip


# --- pieces of a network: what a table entry times -------------------------------------------


class Tail(nn.Module):
    """Everything after the last block: the last 1x1 conv, pooling, pre-logits and classifier."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.final_conv, self.pool, self.flatten = model.final_conv, model.pool, model.flatten
        self.pre_logits, self.classifier = model.pre_logits, model.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pre_logits(self.flatten(self.pool(self.final_conv(x)))))


def pieces(model: nn.Module, shape: tuple) -> list[tuple[str, nn.Module, tuple]]:
    """(name, module, input shape) of the stem, every block and the tail, in order."""
    named = [("stem", model.stem)]
    for i, stage in enumerate(model.stages):
        named += [(f"stages.{i}.{j}", block) for j, block in enumerate(stage)]
    shapes: dict[str, tuple] = {}
    hooks = [m.register_forward_pre_hook(lambda _m, args, n=n: shapes.__setitem__(n, tuple(args[0].shape)))
             for n, m in [*named, ("tail", model.final_conv)]]  # fmt: skip
    try:
        with torch.no_grad():
            model.eval().forward_features(torch.zeros(shape))
    finally:
        for h in hooks:
            h.remove()
    return [(n, m, shapes[n]) for n, m in named] + [("tail", Tail(model), shapes["tail"])]


def piece_key(module: nn.Module, shape: tuple) -> str:
    """A table key: the module's structure (every layer's widths, kernel, stride, activation) and input."""
    return hashlib.sha1(f"{module!r}|{tuple(shape)}".encode()).hexdigest()[:20]


def _write_onnx(module: nn.Module, shape: tuple, path: Path) -> None:
    """BN folded, static shape. The TorchScript exporter (~0.1 s a block) where it exists, else torch.export."""
    from ..deploy.optimize import optimize

    inference = optimize(nn.Sequential(copy.deepcopy(module)).eval(), channels_last=False)
    example = torch.randn(shape)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(inference, (example,), str(path), dynamo=False, opset_version=ONNX_OPSET,
                              input_names=["input"], output_names=["output"])  # fmt: skip
        except Exception:  # noqa: BLE001 - a torch without the legacy exporter: the library's own path
            from ..deploy.exporter import _write_onnx as write_dynamo

            write_dynamo(inference, path, example, 20)


def make_runner(module: nn.Module, shape: tuple, target: Target, workdir: Path, name: str):
    """A callable timing ``module`` on ``target``'s runtime (one call = one batch-1 inference)."""
    from ..deploy.runtimes import ort_runner, ov_runner

    if target.runtime == "torch":
        from ..deploy.bench import _torch_runner

        return _torch_runner(copy.deepcopy(module).eval(), target.threads)
    path = workdir / f"{name}.onnx"
    _write_onnx(module, shape, path)
    if target.runtime.endswith("-int8"):
        from ..deploy.quantize import quantize_onnx

        rng = np.random.default_rng(0)
        int8 = workdir / f"{name}.int8.onnx"
        quantize_onnx(path, int8, [rng.standard_normal(shape, dtype=np.float32) for _ in range(4)])
        path = int8
    if target.runtime.startswith("onnxruntime"):
        return ort_runner(path, target.threads)
    return ov_runner(path, target.threads, "f32")


def time_modules(modules: dict[str, tuple[nn.Module, tuple]], target: Target) -> dict[str, float]:
    """Median batch-1 latency (ms) of each module at its input shape, all timed round-robin together."""
    threads = torch.get_num_threads()
    try:
        with tempfile.TemporaryDirectory(prefix="mobilenets-latency-") as tmp:
            runners, inputs = {}, {}
            for i, (key, (module, shape)) in enumerate(modules.items()):
                run = make_runner(module, shape, target, Path(tmp), f"m{i}")
                x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
                runners[key] = lambda _x, run=run, x=x: run(x)  # each module takes its own input
                inputs[key] = x
            times = time_interleaved(runners, next(iter(inputs.values())), warmup=5, rounds=target.rounds,
                                     round_seconds=target.round_seconds, progress=False)  # fmt: skip
    finally:
        torch.set_num_threads(threads)  # the torch runner sets the target's count; training continues after
    return {key: summarize(values)[0] for key, values in times.items()}


# --- calibration -----------------------------------------------------------------------------------


def fit_line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(a, b) of ``measured ~ a * table_sum + b``: a ratio with one point, least squares with more
    (a ratio again if the fit's slope is not positive: noise must not make narrower nets predict slower)."""
    if not points:
        return 1.0, 0.0
    x = np.array([p[0] for p in points])
    y = np.array([p[1] for p in points])
    ratio = float(np.sum(y) / np.sum(x))
    if len(points) < 3 or np.ptp(x) < 1e-3 * np.mean(x):
        return ratio, 0.0
    a, b = np.polyfit(x, y, 1)
    return (float(a), float(b)) if a > 0 else (ratio, 0.0)


def mape(pairs: list[tuple[float, float]]) -> float | None:
    """Mean absolute percentage error of (predicted, measured) pairs."""
    if not pairs:
        return None
    return float(np.mean([abs(p - m) / m for p, m in pairs]) * 100)


def read_table(path: Path) -> dict:
    """A latency table this module wrote; anything else at ``path`` is refused (it would be overwritten)."""
    foreign = (f"{path} is not a latency table written by mobilenets; nothing was written: give --table a new "
               "path or a table an earlier `mobilenets adapt` wrote")  # fmt: skip
    if not path.is_file():
        raise ValueError(foreign)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        raise ValueError(foreign) from None
    if not isinstance(data, dict) or not {"version", "fingerprint", "entries", "points"} <= data.keys():
        raise ValueError(foreign)
    return data


class RuntimeLatency:
    """NetAdapt's latency oracle on a real runtime: ``predict`` (table sum, calibrated), ``measure``
    (whole networks, interleaved), ``observe`` (a whole-network timing becomes a calibration point).

    ``path``: the JSON table (entries, calibration points, fingerprint), written atomically after
    every change; a table measured on another machine or runtime is set aside, not reused.
    """

    def __init__(self, target: Target, path: str | os.PathLike | None = None):
        target.check()
        self.target = target
        self.path = Path(path) if path else None
        self.fingerprint = fingerprint(target)
        self.entries: dict[str, dict] = {}
        self.points: list[dict] = []
        if self.path and os.path.lexists(self.path):
            data = read_table(self.path)
            if data.get("fingerprint") == self.fingerprint and data.get("resolution") == list(target.resolution):
                self.entries, self.points = data.get("entries", {}), data.get("points", [])
            else:
                log.warning("%s was measured on another machine, runtime or input size; starting a new table",
                            self.path)  # fmt: skip

    def save(self) -> None:
        if self.path:
            data = {
                "version": TABLE_VERSION,
                "fingerprint": self.fingerprint,
                "target": asdict(self.target),
                "resolution": list(self.target.resolution),
                "entries": self.entries,
                "points": self.points,
            }
            atomic_write_text(self.path, json.dumps(data, indent=1) + "\n")

    def table_sum(self, model: nn.Module) -> float:
        """Sum of the model's block entries (ms), measuring the missing ones now."""
        parts = [(name, module, shape, piece_key(module, shape)) for name, module, shape in
                 pieces(model, self.target.shape)]  # fmt: skip
        missing = {key: (module, shape) for _, module, shape, key in parts if key not in self.entries}
        if missing:
            for key, ms in time_modules(missing, self.target).items():
                name = next(n for n, _, _, k in parts if k == key)
                self.entries[key] = {"ms": ms, "piece": name, "shape": list(missing[key][1])}
            self.save()
        return float(sum(self.entries[key]["ms"] for *_, key in parts))

    def calibration(self) -> tuple[float, float]:
        return fit_line([(p["table_ms"], p["measured_ms"]) for p in self.points])

    def predict(self, model: nn.Module) -> float:
        a, b = self.calibration()
        return a * self.table_sum(model) + b

    def measure(self, models: dict[str, nn.Module]) -> dict[str, float]:
        shape = self.target.shape
        return time_modules({name: (m, shape) for name, m in models.items()}, self.target)

    def observe(self, name: str, model: nn.Module, measured_ms: float, predicted_ms: float | None = None) -> None:
        point = {"name": name, "table_ms": self.table_sum(model), "measured_ms": measured_ms}
        if predicted_ms is not None:
            point["predicted_ms"] = predicted_ms  # the calibrated prediction made before this timing
        self.points = [p for p in self.points if p["name"] != name] + [point]
        self.save()

    def report(self) -> dict:
        """The table's error: raw sums, after calibration (in-sample), and of the predictions made before
        each timing (out of sample: what the search relied on)."""
        a, b = self.calibration()
        raw = [(p["table_ms"], p["measured_ms"]) for p in self.points]
        return {
            "entries": len(self.entries),
            "points": len(self.points),
            "a": a,
            "b": b,
            "mape_raw": mape(raw),
            "mape_calibrated": mape([(a * t + b, m) for t, m in raw]),
            "mape_predicted": mape([(p["predicted_ms"], p["measured_ms"]) for p in self.points if "predicted_ms" in p]),
        }
