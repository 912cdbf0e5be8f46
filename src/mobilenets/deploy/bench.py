"""Batch latency of a model in every installed runtime, measured side by side.

Configurations are timed round-robin (a slice of each in turn, for several rounds) so that
noise from other processes on a shared machine falls on all of them alike; each reports
the median and p90 of single-call wall times, images/s, and achieved GFLOP/s with its
share of the measured per-core peak (``peak.py``): the fp32 FMA peak for fp32 runtimes, the
int8 (AMX or VNNI) peak for INT8 ones. A share above 100% means the peak was measured too
low: it is printed as 100% and flagged, never as more.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .optimize import optimize
from .peak import core_int8_peak_gops, core_peak_gflops, cpu_features
from .runtimes import available, ort_runner, ov_runner
from .timing import summarize, time_interleaved  # noqa: F401 (bench's names before timing.py existed)

log = logging.getLogger(__name__)

# name -> (description, package it needs)
RUNTIMES = {
    "eager": ("PyTorch eager, the model as built", "torch"),
    "optimized": ("PyTorch eager after mobilenets.optimize() (BN folded, channels_last GEMMs)", "torch"),
    "compile": ("torch.compile(optimize(model)), inductor", "torch"),
    "onnxruntime": ("ONNX Runtime CPU, fp32, BN-folded export", "onnxruntime"),
    "openvino": ("OpenVINO CPU, fp32 (INFERENCE_PRECISION_HINT=f32)", "openvino"),
    "openvino-bf16": ("OpenVINO CPU, bf16 compute (not fp32)", "openvino"),
    "onnxruntime-int8": ("ONNX Runtime, INT8 QDQ model from `mobilenets quantize`", "onnxruntime"),
    "openvino-int8": ("OpenVINO, the same INT8 QDQ model (float leftovers in f32)", "openvino"),
    "openvino-int8-bf16": ("OpenVINO INT8, float leftovers (SE, hard-swish) in bf16", "openvino"),
}
DEFAULT_RUNTIMES = ("eager", "optimized", "onnxruntime", "openvino")
FP32_RUNTIMES = ("eager", "optimized", "compile", "onnxruntime", "openvino")
TORCH_RUNTIMES = ("eager", "optimized", "compile")  # the only ones that run on --device cuda
INT8_FILE = "model.int8.onnx"


@dataclass
class BenchResult:
    model: str
    runtime: str
    threads: int
    batch: int
    resolution: int
    median_ms: float
    p90_ms: float
    samples: int
    madds: int
    images_per_s: float = 0.0
    gflops: float = 0.0
    # achieved G(FL)OP/s / (threads x measured per-core peak of ``peak_basis``), at most 1; None: no peak
    peak_share: float | None = None
    peak_basis: str = ""  # "fp32" (FMA peak), "int8" (AMX/VNNI peak) or "" (bf16, or no int8 peak)
    top1: float | None = None
    extra: dict = field(default_factory=dict)
    device: str = "cpu"  # where the model ran: "cpu", or "cuda" for --device cuda (PyTorch runtimes)

    def finish(self, peak_per_core: float, int8_peak_per_core: float | None = None) -> BenchResult:
        seconds = self.median_ms / 1e3
        self.images_per_s = self.batch / seconds
        self.gflops = 2 * self.madds * self.batch / seconds / 1e9
        if self.device != "cpu":
            self.peak_basis, peak = "", None  # the peaks are one CPU core's
        elif "int8" in self.runtime:
            self.peak_basis, peak = ("int8", int8_peak_per_core) if int8_peak_per_core else ("", None)
        elif "bf16" in self.runtime:
            self.peak_basis, peak = "", None  # no bf16 peak is measured
        else:
            self.peak_basis, peak = "fp32", peak_per_core
        if peak is None:
            self.peak_share = None
            return self
        share = self.gflops / (peak * self.threads)
        if share > 1:
            # Nothing runs faster than the peak: the peak measurement is wrong (too narrow a loop, a
            # throttled core when it ran). Keep the raw ratio for the record, never report it as a share.
            self.extra["peak_exceeded"] = share
            share = 1.0
        self.peak_share = share
        return self

    def as_dict(self) -> dict:
        return asdict(self)


def parse_runtimes(text: str | None) -> list[str]:
    """Comma list of runtime names, or "all" / "fp32"; unknown names raise with the valid list."""
    if not text:
        return list(DEFAULT_RUNTIMES)
    if text == "all":
        return list(RUNTIMES)
    if text == "fp32":
        return list(FP32_RUNTIMES)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in RUNTIMES]
    if unknown:
        raise ValueError(f"unknown runtime {unknown[0]!r}; valid: {', '.join(RUNTIMES)}, or 'all' / 'fp32'")
    return names


def check_installed(runtimes: list[str]) -> None:
    """Raise ImportError naming the first runtime whose package is missing and how to install it."""
    for name in runtimes:
        package = RUNTIMES[name][1]
        if package != "torch" and not available(package):
            raise ImportError(f"runtime {name!r} needs {package}, which is not installed; "
                              f"`pip install {package}` or drop it from --runtimes")  # fmt: skip


def parse_threads(text: str | int | list[int]) -> list[int]:
    if isinstance(text, int):
        values = [text]
    elif isinstance(text, list):
        values = text
    else:
        try:
            values = [int(v) for v in str(text).split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--threads takes a comma list of integers such as 1,2, got {text!r}") from None
    cpus = os.cpu_count() or 1
    bad = [v for v in values if not 1 <= v <= cpus]
    if not values or bad:
        raise ValueError(f"thread counts must be between 1 and {cpus} (this machine's CPUs), got {text!r}")
    return values


def _torch_runner(module: nn.Module, threads: int, device: torch.device | None = None) -> Callable:
    device = device or torch.device("cpu")
    on_device: list = []  # [(array, its copy on the device)]: copied once, so that a call times the model only

    def run(x: np.ndarray):
        torch.set_num_threads(threads)
        with torch.inference_mode():
            if device.type == "cpu":
                return module(torch.from_numpy(x))
            if not on_device or on_device[0][0] is not x:
                on_device[:] = [(x, torch.from_numpy(x).to(device))]
            out = module(on_device[0][1])
            torch.cuda.synchronize(device)  # CUDA calls return before the kernels finish
            return out

    return run


class RunnerFactory:
    """Builds one callable per (runtime, threads) for one model, exporting artifacts once into ``workdir``."""

    def __init__(self, model: nn.Module, shape: tuple, workdir: Path, int8_path: Path | None = None,
                 device: torch.device | None = None):  # fmt: skip
        self.device = device or torch.device("cpu")
        # On a GPU a copy is timed: the caller's model stays where it was.
        model = (model if self.device.type == "cpu" else copy.deepcopy(model).to(self.device)).eval()
        # A detector is timed end to end in every runtime: image in, final boxes out (NMS included).
        from .exporter import end_to_end

        self.model = end_to_end(model)
        self.shape = shape
        self.workdir = workdir
        self.int8_path = int8_path
        self._cache: dict[str, object] = {}

    def _onnx(self) -> Path:
        if "onnx" not in self._cache:
            from .exporter import export_onnx

            path = self.workdir / f"{getattr(self.model, 'name', 'model')}.onnx"
            export_onnx(self.model, path, resolution=self.shape[2:], batch=self.shape[0])
            self._cache["onnx"] = path
        return self._cache["onnx"]

    def _int8(self) -> Path:
        if self.int8_path is not None:
            return self.int8_path
        if "int8" not in self._cache:
            from .quantize import quantize_onnx

            # No real data here: random calibration gives the right graph for timing, not a usable accuracy.
            log.warning("%s: no %s; timing an INT8 model calibrated on random inputs (accuracy meaningless)",
                        getattr(self.model, "name", "model"), INT8_FILE)  # fmt: skip
            path = self.workdir / f"{getattr(self.model, 'name', 'model')}.int8.onnx"
            rng = np.random.default_rng(0)
            batches = [rng.standard_normal((1, *self.shape[1:]), dtype=np.float32) for _ in range(8)]
            quantize_onnx(self._onnx(), path, batches)
            self._cache["int8"] = path
        return self._cache["int8"]

    def make(self, runtime: str, threads: int) -> Callable[[np.ndarray], np.ndarray]:
        if runtime == "eager":
            return _torch_runner(self.model, threads, self.device)
        if runtime == "optimized":
            if "optimized" not in self._cache:
                self._cache["optimized"] = optimize(self.model)
            return _torch_runner(self._cache["optimized"], threads, self.device)
        if runtime == "compile":
            if "compile" not in self._cache:
                self._cache["compile"] = torch.compile(optimize(self.model))
            return _torch_runner(self._cache["compile"], threads, self.device)
        if runtime == "onnxruntime":
            return ort_runner(self._onnx(), threads)
        if runtime == "openvino":
            return ov_runner(self._onnx(), threads, "f32")
        if runtime == "openvino-bf16":
            return ov_runner(self._onnx(), threads, "bf16")
        if runtime == "onnxruntime-int8":
            return ort_runner(self._int8(), threads)
        if runtime == "openvino-int8":
            return ov_runner(self._int8(), threads, "f32")
        if runtime == "openvino-int8-bf16":
            return ov_runner(self._int8(), threads, "bf16")
        raise ValueError(f"unknown runtime {runtime!r}; valid: {', '.join(RUNTIMES)}")


def bench_models(
    models: dict[str, nn.Module],
    *,
    runtimes: list[str] | None = None,
    threads: list[int] | None = None,
    batch: int = 1,
    resolution: int | tuple[int, int] | None = None,
    int8_paths: dict[str, Path] | None = None,
    rounds: int = 5,
    round_seconds: float = 0.3,
    workdir: str | os.PathLike | None = None,
    device: str = "cpu",
    progress: bool | None = None,
) -> list[BenchResult]:
    """Time every model in every runtime at every thread count; configurations of one thread count interleaved.

    ``device`` "cuda" times the PyTorch runtimes on the GPU (default there: eager, optimized);
    ``progress``: bars over the timing rounds (None: when stderr is a terminal).
    """
    from ..complexity import parse_resolution, profile
    from ..devices import resolve_device

    target = resolve_device(device)
    if target.type != "cpu":
        runtimes = list(runtimes or ("eager", "optimized"))
        cpu_only = [rt for rt in runtimes if rt not in TORCH_RUNTIMES]
        if cpu_only:
            raise ValueError(f"runtime {cpu_only[0]!r} runs on the CPU only; with --device {device} use "
                             f"--runtimes {','.join(TORCH_RUNTIMES)} (or a part of it)")  # fmt: skip
    runtimes = list(runtimes or DEFAULT_RUNTIMES)
    threads = threads or [1]
    check_installed(runtimes)
    peak, _ = core_peak_gflops()
    int8_peak = core_int8_peak_gops()[0] if any("int8" in rt for rt in runtimes) else None
    cpu = cpu_features().summary()
    results = []
    with tempfile.TemporaryDirectory(prefix="mobilenets-bench-", dir=workdir) as tmp:
        factories, inputs, madds = {}, {}, {}
        for index, (name, model) in enumerate(models.items()):
            pre = getattr(model, "preprocessing", None)
            res = parse_resolution(resolution or (tuple(pre.input_size) if pre is not None else 224))
            shape = (batch, getattr(model, "in_chans", 3), *res)
            int8 = (int8_paths or {}).get(name)
            # A folder per model: two models of one architecture (a seed and its NetAdapt result) share a name.
            workdir_of = Path(tmp) / str(index)
            workdir_of.mkdir()
            factories[name] = RunnerFactory(model, shape, workdir_of, int8, target)
            inputs[name] = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
            madds[name] = profile(model, res).madds
        for n_threads in threads:
            for name in models:
                runners = {rt: factories[name].make(rt, n_threads) for rt in runtimes}
                times = time_interleaved(runners, inputs[name], rounds=rounds, round_seconds=round_seconds,
                                         desc=f"{name}, {n_threads} thr", progress=progress)  # fmt: skip
                for rt in runtimes:
                    median, p90 = summarize(times[rt])
                    res = inputs[name].shape[-1]
                    top1 = (getattr(models[name], "metadata", None) or {}).get("top1")
                    results.append(BenchResult(name, rt, n_threads, batch, res, median, p90, len(times[rt]),
                                               madds[name], top1=top1, extra={"cpu": cpu}, device=str(target))
                                   .finish(peak, int8_peak))  # fmt: skip
    torch.set_num_threads(max(threads))
    for r in results:
        if "peak_exceeded" in r.extra:
            log.warning("%s %s ran at %.0f%% of the measured %s peak: the peak measurement is too low; "
                        "the share is shown as 100%%", r.model, r.runtime, 100 * r.extra["peak_exceeded"],
                        r.peak_basis)  # fmt: skip
    return results


def _share(r: BenchResult) -> str:
    if r.peak_share is None:
        return "n/a"
    return f"{100 * r.peak_share:.0f}%" + ("!" if "peak_exceeded" in r.extra else "")


def format_table(results: list[BenchResult]) -> str:
    peak, how = core_peak_gflops()
    int8_peak, int8_how = core_int8_peak_gops() if any("int8" in r.runtime for r in results) else (None, "")
    header = (f"{'model':<26} {'runtime':<17} {'thr':>3} {'median ms':>9} {'p90 ms':>8} {'img/s':>8} "
              f"{'MAdds':>7} {'GFLOP/s':>8} {'% peak':>6}")  # fmt: skip
    lines = [header, "-" * len(header)]
    for r in results:
        share = _share(r)
        lines.append(
            f"{r.model:<26} {r.runtime:<17} {r.threads:>3} {r.median_ms:>9.2f} {r.p90_ms:>8.2f} {r.images_per_s:>8.1f} "
            f"{r.madds / 1e6:>6.1f}M {r.gflops:>8.1f} {share:>6}"
        )
    int8_text = f", int8 {int8_peak:.0f} GOP/s ({int8_how})" if int8_peak else f", int8: {int8_how}" if int8_how else ""
    lines.append(f"\npeak per core: fp32 {peak:.0f} GFLOP/s ({how}){int8_text}")
    lines.append("GFLOP/s = 2 x MAdds x batch / median; % peak: fp32 runtimes against the fp32 peak x threads, "
                 "INT8 ones against the int8 peak, bf16 n/a")  # fmt: skip
    devices = sorted({r.device for r in results if r.device != "cpu"})
    if devices:
        lines.append(f"device: {', '.join(devices)} for the PyTorch runtimes (% peak n/a: the peaks are a CPU core's)")
    if any("peak_exceeded" in r.extra for r in results):
        lines.append("!: faster than the measured peak, so that peak was measured too low; shown as 100%")
    lines.append(f"cpu: {cpu_features().summary()}")
    return "\n".join(lines)


def plot(results: list[BenchResult], path: str | os.PathLike) -> Path:
    """Latency vs MAdds (and top-1 vs latency when known), like P-V3 Fig. 1, saved to ``path``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("--plot needs matplotlib: `pip install matplotlib`") from None
    from ..io import atomic_write

    fig = _figure(results, plt)
    suffix = Path(path).suffix.lstrip(".") or "png"
    written = atomic_write(path, lambda tmp: fig.savefig(tmp, format=suffix, dpi=120))
    plt.close(fig)
    return written


def _figure(results: list[BenchResult], plt):
    """One marker per model and runtime (colour and shape: runtime and threads, in the legend), each model's
    name beside its points, and a thin grey line only between one model's own points (its runtimes):
    different models are separate networks, never one curve."""
    with_acc = any(r.top1 is not None for r in results)
    fig, axes = plt.subplots(1, 2 if with_acc else 1, figsize=(12 if with_acc else 7, 5), squeeze=False)
    panels = [(axes[0][0], lambda r: r.madds / 1e6, lambda r: r.median_ms)]
    if with_acc:
        panels.append((axes[0][1], lambda r: r.median_ms, lambda r: r.top1))
    series = list(dict.fromkeys((r.runtime, r.threads) for r in results))
    models = list(dict.fromkeys(r.model for r in results))
    for ax, x_of, y_of in panels:
        for model in models:
            rows = sorted((x_of(r), y_of(r)) for r in results if r.model == model and y_of(r) is not None)
            if not rows:
                continue
            if len(rows) > 1:
                ax.plot(*zip(*rows, strict=True), "-", color="0.7", lw=1, zorder=1)
            ax.annotate(model, max(rows, key=lambda p: p[1]), xytext=(5, 5), textcoords="offset points", fontsize=8)
        for i, (runtime, threads) in enumerate(series):
            rows = [r for r in results if (r.runtime, r.threads) == (runtime, threads) and y_of(r) is not None]
            ax.scatter([x_of(r) for r in rows], [y_of(r) for r in rows], marker="osD^vP*Xph"[i % 10], s=40,
                       color=f"C{i % 10}", label=f"{runtime} ({threads} thr)", zorder=2)  # fmt: skip
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.margins(x=0.15, y=0.1)  # room for the names
    axes[0][0].set(xlabel="MAdds (M)", ylabel="median latency (ms)", title="latency vs MAdds")
    if with_acc:
        axes[0][1].set(xlabel="median latency (ms)", ylabel="top-1 (%)", title="accuracy vs latency")
    latencies = [r.median_ms for r in results if r.median_ms > 0]
    if latencies and max(latencies) > 20 * min(latencies):  # eager vs a compiled runtime at small inputs: 0.1-30 ms
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        axes[0][0].set_yscale("log")
        if with_acc:
            axes[0][1].set_xscale("log")
        for axis in [axes[0][0].yaxis] + ([axes[0][1].xaxis] if with_acc else []):
            axis.set_major_locator(LogLocator(subs=(1, 2, 5)))  # 0.1 0.2 0.5 1 2 5: ticks within one decade too
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # rather than 10^-1
            axis.set_minor_formatter(NullFormatter())
            axis.set_label_text("median latency (ms, log scale)")
    fig.tight_layout()
    return fig
