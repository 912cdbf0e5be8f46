"""INT8 post-training quantization (ONNX QDQ, per-channel weights) calibrated on real images.

The artifact is one QDQ ONNX file: ONNX Runtime and OpenVINO both run it in INT8. Activations
are U8 (ONNX Runtime keeps some convs in float with S8 activations), weights S8 per channel,
which depthwise convs need. MobileNetV3's squeeze-excite sub-graphs (pool, two FCs,
hard-sigmoid gate, multiply) can be kept in float, as NNCF does, because their tiny per-channel
gates lose the most under a shared 8-bit scale.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from ..io import atomic_write, check_output
from .exporter import readable
from .runtimes import ort_runner, ov_runner, require

log = logging.getLogger(__name__)

KEEP_FLOAT = ("auto", "none", "se", "se+ends")
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
EVAL_RUNTIMES = ("onnxruntime", "openvino")


def _producers(graph) -> dict[str, object]:
    return {out: node for node in graph.node for out in node.output}


def _consumers(graph) -> dict[str, list]:
    table: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            table.setdefault(name, []).append(node)
    return table


def find_se_nodes(onnx_model) -> list[str]:
    """Names of the nodes of every squeeze-excite sub-graph: ReduceMean -> FC -> act -> FC -> HardSigmoid -> Mul."""
    graph = onnx_model.graph
    producers, consumers = _producers(graph), _consumers(graph)
    names: list[str] = []
    for gate in (n for n in graph.node if n.op_type in ("HardSigmoid", "Sigmoid")):
        chain, node = [gate], gate
        # Walk back through single-activation-input ops to the global pool.
        while node is not None and node.op_type not in ("ReduceMean", "GlobalAveragePool"):
            node = producers.get(node.input[0])
            if node is None or node.op_type not in ("Gemm", "Conv", "Relu", "ReduceMean", "GlobalAveragePool",
                                                    "Reshape", "Flatten", "MatMul", "Add"):  # fmt: skip
                node = None
                break
            chain.append(node)
        if node is None:
            continue
        node = gate
        while True:  # forward through reshapes to the gating multiply
            nxt = consumers.get(node.output[0], [])
            if len(nxt) != 1:
                break
            node = nxt[0]
            chain.append(node)
            if node.op_type == "Mul" or node.op_type not in ("Unsqueeze", "Reshape"):
                break
        names += [n.name for n in chain]
    return list(dict.fromkeys(names))


def find_end_nodes(onnx_model) -> list[str]:
    """The first conv and the layers after the last global pool (pre-logits FC and classifier)."""
    graph = onnx_model.graph
    first_conv = next((n.name for n in graph.node if n.op_type == "Conv"), None)
    pools = [i for i, n in enumerate(graph.node) if n.op_type in ("ReduceMean", "GlobalAveragePool")]
    tail = [n.name for n in graph.node[pools[-1] + 1 :] if n.op_type in ("Gemm", "MatMul", "Conv")] if pools else []
    return [name for name in [first_conv, *tail] if name]


def float_nodes(onnx_model, keep_float: str) -> list[str]:
    """The nodes a keep-float policy leaves in fp32."""
    if keep_float not in KEEP_FLOAT:
        raise ValueError(f"unknown keep-float policy {keep_float!r}; valid: {', '.join(KEEP_FLOAT)}")
    se = find_se_nodes(onnx_model)
    if keep_float == "none" or (keep_float == "auto" and not se):
        return []
    if keep_float in ("se", "auto"):
        return se
    return se + find_end_nodes(onnx_model)


class _Reader:
    """ONNX Runtime CalibrationDataReader over a list of (1, C, H, W) arrays."""

    def __init__(self, input_name: str, batches: Sequence[np.ndarray]):
        self.input_name = input_name
        self.batches = iter(batches)

    def get_next(self):
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: batch}

    def rewind(self):  # some ORT versions call it
        pass


def quantize_onnx(
    fp32_path: str | os.PathLike,
    out_path: str | os.PathLike,
    calibration: Sequence[np.ndarray],
    *,
    keep_float: str = "auto",
    method: str = "minmax",
    extra_float: Sequence[str] = (),
) -> list[str]:
    """Write an INT8 QDQ model of ``fp32_path`` to ``out_path`` (atomically); returns the nodes kept in float.

    ``extra_float`` names more nodes to keep in float, beyond the ``keep_float`` policy.
    """
    onnx = require("onnx")
    require("onnxruntime")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if method not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration method {method!r}; valid: {', '.join(CALIBRATION_METHODS)}")
    if not calibration:
        raise ValueError("quantization needs at least one calibration image")
    model = onnx.load(str(fp32_path))
    excluded = list(dict.fromkeys([*float_nodes(model, keep_float), *extra_float]))
    input_name = model.graph.input[0].name
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}  # fmt: skip

    def write(tmp: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="mobilenets-quant-") as scratch:
            # ORT's calibrator writes its augmented model to the working directory; keep that out of the user's.
            cwd = os.getcwd()
            os.chdir(scratch)
            # ORT logs a "consider pre-processing" hint through the root logger on every call: not for our users.
            root = logging.getLogger()
            level = root.level
            root.setLevel(logging.ERROR)
            try:
                quantize_static(
                    str(Path(fp32_path).resolve()), str(tmp), _Reader(input_name, list(calibration)),
                    quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=excluded, calibrate_method=methods[method],
                    extra_options={"CalibTensorRangeSymmetric": False},
                )  # fmt: skip
            finally:
                root.setLevel(level)
                os.chdir(cwd)
        onnx.checker.check_model(str(tmp))
        readable(tmp)

    atomic_write(out_path, write)
    return excluded


@dataclass
class QuantizeReport:
    """Top-1 and latency of the fp32 export and the INT8 artifact, both in ``runtime``."""

    output: str
    runtime: str
    calibration_images: int
    eval_images: int
    keep_float: str
    float_nodes: int
    method: str
    top1_fp32: float
    top1_int8: float
    latency_fp32_ms: float
    latency_int8_ms: float
    threads: int
    extra: dict = field(default_factory=dict)

    @property
    def top1_drop(self) -> float:
        return self.top1_fp32 - self.top1_int8

    @property
    def speedup(self) -> float:
        return self.latency_fp32_ms / self.latency_int8_ms

    def as_dict(self) -> dict:
        return {**asdict(self), "top1_drop": self.top1_drop, "speedup": self.speedup}


def early_convs(onnx_path: str | os.PathLike, count: int) -> list[str]:
    """The first ``count`` convs in network order: where quantization noise has the most depth to grow."""
    onnx = require("onnx")
    return [n.name for n in onnx.load(str(onnx_path)).graph.node if n.op_type == "Conv"][:count]


def _top1(run, images: np.ndarray, labels: np.ndarray, desc: str = "top-1") -> float:
    from ..progress import progress  # a bar when stderr is a terminal (and not --quiet)

    indices = progress(range(len(labels)), desc, unit="img")
    correct = sum(int(np.argmax(run(images[i : i + 1]))) == int(labels[i]) for i in indices)
    return 100.0 * correct / len(labels)


def _latency_ms(runners: dict, x: np.ndarray) -> dict[str, float]:
    from .timing import summarize, time_interleaved

    times = time_interleaved(runners, x, rounds=5, round_seconds=0.2)
    return {key: summarize(value)[0] for key, value in times.items()}


def split_images(data, pre, labels, *, calibration: int, eval_images: int, validation: int):
    """Disjoint (calibration, evaluation, validation) images of ``data``; validation is None when empty or 0.

    IDX data with both splits: calibration and validation from train (validation after the
    calibration images), evaluation from t10k. One pool (an image folder, or IDX data with only
    one split): consecutive slices, calibration, then evaluation, then validation. No image is
    in two of them: the evaluation never sees the images that set the scales or chose fallbacks.
    """
    from ..data.calibration import idx_splits, load_labelled_images

    root = Path(data)
    splits = idx_splits(root) if root.is_dir() else []
    if splits == ["train", "test"]:
        calib_split, eval_split, eval_offset = "train", "test", 0
    else:
        calib_split = eval_split = splits[0] if splits else "train"  # ignored for folders
        eval_offset = calibration
        if splits:
            log.warning("--data %s has no %s split: evaluating on %s images after the %d calibration ones",
                        root, "t10k" if splits == ["train"] else "train", calib_split, calibration)  # fmt: skip
    calib = load_labelled_images(data, pre, split=calib_split, limit=calibration, model_labels=labels)
    # Offsets count the images actually taken, in case the pool held fewer than asked.
    eval_offset = min(eval_offset, len(calib))
    if eval_split == calib_split and len(calib) < calibration:
        raise ValueError(f"--data {root} has only {len(calib)} images, all needed for --calibration {calibration}; "
                         "use fewer calibration images or give data with a test split")  # fmt: skip
    evaluation = load_labelled_images(data, pre, split=eval_split, limit=eval_images, offset=eval_offset,
                                      model_labels=labels)  # fmt: skip
    held_out = None
    if validation > 0:
        offset = len(calib) + (len(evaluation) if eval_split == calib_split else 0)
        try:
            held_out = load_labelled_images(data, pre, split=calib_split, limit=validation, offset=offset,
                                            model_labels=labels)  # fmt: skip
        except ValueError:
            log.warning("no images left for the accuracy-aware fallback's validation split; it is skipped")
    return calib, evaluation, held_out


def quantize_model(
    model: nn.Module,
    out_path: str | os.PathLike,
    data: str | os.PathLike,
    *,
    calibration: int = 200,
    eval_images: int = 1000,
    keep_float: str = "auto",
    method: str = "minmax",
    runtime: str = "onnxruntime",
    threads: int = 1,
    max_drop: float | None = 1.0,
    validation: int = 1000,
    overwrite: bool = False,
) -> QuantizeReport:
    """Export ``model``, quantize it to INT8 calibrated on ``calibration`` images of ``data``, then evaluate.

    Calibration images come from the train split (IDX) or the first shuffled images (folders, or
    IDX data with one split); evaluation uses ``eval_images`` others (``split_images``). Top-1
    and latency are measured in ``runtime``.

    Accuracy-aware fallback: when INT8 loses more than ``max_drop`` top-1 points on
    ``validation`` held-out images (train split after the calibration images; for one pool the
    images after the evaluation ones), the earliest convs are kept in float (1, 2, 4, 8...), until
    the validation drop fits or half the convs are float. The test images never steer it.
    ``max_drop=None`` turns it off. An existing file at ``out_path`` is replaced only with ``overwrite``.
    """
    from .exporter import export_onnx

    if runtime not in EVAL_RUNTIMES:
        raise ValueError(f"unknown evaluation runtime {runtime!r}; valid: {', '.join(EVAL_RUNTIMES)}")
    if calibration < 1 or eval_images < 1:
        raise ValueError(f"--calibration and --eval-images must be >= 1, got {calibration} and {eval_images}")
    if keep_float not in KEEP_FLOAT:
        raise ValueError(f"unknown keep-float policy {keep_float!r}; valid: {', '.join(KEEP_FLOAT)}")
    out_path = Path(out_path)
    if out_path.suffix != ".onnx":
        raise ValueError(f"the INT8 model is a QDQ ONNX file: -o must end in .onnx, got {out_path}")
    check_output(out_path, directory=False, overwrite=overwrite)  # before the minutes of calibration
    pre = getattr(model, "preprocessing", None)
    if pre is None:
        from ..preprocessing import default_preprocessing

        pre = default_preprocessing(getattr(model, "in_chans", 3))
        log.warning("the model carries no preprocessing (load it with load_model); assuming %s", pre)
    labels = getattr(model, "labels", None)
    calib, evaluation, held_out = split_images(data, pre, labels, calibration=calibration, eval_images=eval_images,
                                               validation=validation if max_drop is not None else 0)  # fmt: skip
    num_classes = getattr(model, "num_classes", None)
    if num_classes and int(evaluation.labels.max()) >= num_classes:
        raise ValueError(f"--data has label {int(evaluation.labels.max())} but the model has {num_classes} classes")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mobilenets-quant-") as tmp:
        fp32_path = Path(tmp) / "model.onnx"
        export_onnx(model, fp32_path, resolution=pre.input_size, batch=1)
        # Quantize into the scratch directory first: the user's file appears only after evaluation succeeds.
        int8_tmp = Path(tmp) / "model.int8.onnx"
        batches = [calib.images[i : i + 1] for i in range(len(calib))]
        excluded = quantize_onnx(fp32_path, int8_tmp, batches, keep_float=keep_float, method=method)
        make = ort_runner if runtime == "onnxruntime" else ov_runner
        run_fp32 = make(fp32_path, threads)
        fallback = 0
        if max_drop is not None and held_out is not None:
            val_fp32 = _top1(run_fp32, held_out.images, held_out.labels, "validation fp32")
            n_convs = len(early_convs(fp32_path, 10**6))
            val_drop = val_fp32 - _top1(make(int8_tmp, threads), held_out.images, held_out.labels, "validation int8")
            while val_drop > max_drop and max(1, 2 * fallback) <= n_convs // 2:
                fallback = max(1, 2 * fallback)
                excluded = quantize_onnx(fp32_path, int8_tmp, batches, keep_float=keep_float, method=method,
                                         extra_float=early_convs(fp32_path, fallback))  # fmt: skip
                val_drop = val_fp32 - _top1(make(int8_tmp, threads), held_out.images, held_out.labels,
                                            f"validation int8, {fallback} convs float")  # fmt: skip
                log.info("validation drop %.2f with the first %d convs in float", val_drop, fallback)
        run_int8 = make(int8_tmp, threads)
        top1_fp32 = _top1(run_fp32, evaluation.images, evaluation.labels, "eval fp32")
        top1_int8 = _top1(run_int8, evaluation.images, evaluation.labels, "eval int8")
        latency = _latency_ms({"fp32": run_fp32, "int8": run_int8}, evaluation.images[:1])
        atomic_write(out_path, lambda dst: (dst.write_bytes(int8_tmp.read_bytes()), readable(dst)))
    report = QuantizeReport(
        str(out_path), runtime, len(calib), len(evaluation), keep_float, len(excluded), method,
        top1_fp32, top1_int8, latency["fp32"], latency["int8"], threads,
        extra={"seconds": round(time.perf_counter() - started, 1), "calibration_source": calib.source,
               "eval_source": evaluation.source, "float_early_convs": fallback},
    )  # fmt: skip
    log.debug("wrote %s: top-1 %.2f%% -> %.2f%% (%+.2f), latency %.2f -> %.2f ms (%.2fx) in %s",
             out_path, top1_fp32, top1_int8, -report.top1_drop, report.latency_fp32_ms, report.latency_int8_ms,
             report.speedup, runtime)  # fmt: skip
    return report
