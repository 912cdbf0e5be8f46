"""Export a model to ONNX or OpenVINO IR with BN folded and a static input shape, checked before it is kept.

An export is written to a temporary file, checked (``onnx.checker``, then run in its own
runtime against PyTorch on a random input), and only then renamed into place: a failed
export or check leaves no file behind and never overwrites a good one. Every export describes
itself (``describe``): labels, preprocessing and task in the ONNX ``metadata_props`` and in the
OpenVINO IR's ``rt_info`` under ``mobilenets``. ``dynamic_batch`` makes the batch axis free.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..io import atomic_write, check_output, default_mode, temp_sibling
from ..models.signature import outputs_as_list
from .optimize import optimize
from .runtimes import ort_runner, ov_runner, require

log = logging.getLogger(__name__)

FORMATS = ("onnx", "openvino")
SUFFIXES = {"onnx": ".onnx", "openvino": ".xml"}
DEFAULT_OPSET = 20
# torch's exporter emits opset 18 and up; ONNX Runtime 1.2x runs up to 23.
MIN_OPSET, MAX_OPSET = 18, 23
DEFAULT_TOLERANCE = 1e-4


@dataclass
class ExportReport:
    """What an export wrote and how well its runtime matched PyTorch."""

    path: str
    format: str
    input_shape: tuple[int, ...]
    opset: int | None
    max_rel_error: float
    runtime: str
    dynamic_batch: bool = False  # input_shape[0] is then the batch it was checked at; any batch runs

    def as_dict(self) -> dict:
        return asdict(self)


def input_shape_of(model: nn.Module, resolution: int | tuple[int, int] | None = None, batch: int = 1) -> tuple:
    """The static (N, C, H, W) an export uses: ``resolution`` if given, else the model's preprocessing input size."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if resolution is None:
        pre = getattr(model, "preprocessing", None)
        h, w = pre.input_size if pre is not None else (224, 224)
    elif isinstance(resolution, int):
        h = w = resolution
    else:
        h, w = resolution
    in_chans = getattr(model, "in_chans", 3)
    return (batch, in_chans, int(h), int(w))


def names_of(model: nn.Module) -> tuple[list[str], list[str]]:
    """Input and output names from the model's signature (``logits`` for a classifier)."""
    signature = getattr(model, "signature", None)
    if signature is None:
        return ["input"], ["logits"]
    return signature.input_names, signature.output_names


def max_rel_error_all(outs: list[np.ndarray], refs: list[np.ndarray]) -> float:
    """The largest ``max_rel_error`` over several named outputs (they must match in number and shape)."""
    if len(outs) != len(refs) or any(np.shape(o) != np.shape(r) for o, r in zip(outs, refs, strict=False)):
        return float("inf")
    return max(max_rel_error(o, r) for o, r in zip(outs, refs, strict=True))


def max_rel_error(out: np.ndarray, ref: np.ndarray) -> float:
    """max |out - ref| / max |ref|: the scale-free error used by every check here."""
    scale = float(np.abs(ref).max()) or 1.0
    return float(np.abs(out.astype(np.float64) - ref.astype(np.float64)).max()) / scale


def _check_opset(opset: int) -> None:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f"unsupported ONNX opset {opset}; choose one from {MIN_OPSET} to {MAX_OPSET} "
                         f"(default {DEFAULT_OPSET})")  # fmt: skip


def readable(path: Path) -> None:
    """Give a finished file the permissions the umask allows (temporary files start as 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def describe(model: nn.Module, shape: tuple) -> dict[str, str]:
    """What an exported graph needs beside it, as text: model, task, labels (JSON), input size (JSON [H, W]),
    channel order, value range, mean and std (JSON), and the whole preprocessing (JSON)."""
    from .. import __version__
    from ..preprocessing import default_preprocessing
    from ..tasks import task_of

    pre = getattr(model, "preprocessing", None) or default_preprocessing(getattr(model, "in_chans", 3))
    labels = getattr(model, "labels", None)
    return {
        "model": str(getattr(model, "name", type(model).__name__)),
        "task": task_of(model),
        "labels": json.dumps(list(labels) if labels is not None else None),
        "input_size": json.dumps(list(shape[2:])),
        "channel_order": pre.channel_order,
        "value_range": json.dumps(pre.value_range),
        "mean": json.dumps(list(pre.mean)),
        "std": json.dumps(list(pre.std)),
        "preprocessing": json.dumps(pre.to_dict()),
        "mobilenets_version": __version__,
    }


def metadata_of(path: str | os.PathLike) -> dict[str, str]:
    """The ``describe`` text of an ONNX file or OpenVINO IR (.xml) written by ``export``; {} for another's."""
    path = Path(path)
    if path.suffix == ".xml":
        ov = require("openvino")
        model = ov.Core().read_model(str(path))
        if not model.has_rt_info(["mobilenets"]):
            return {}
        return {key: value.astype(str) for key, value in model.get_rt_info()["mobilenets"].items()}
    proto = require("onnx").load(str(path), load_external_data=False)
    return {entry.key: entry.value for entry in proto.metadata_props}


def _write_onnx(
    model: nn.Module,
    path: Path,
    example: torch.Tensor,
    opset: int,
    names: tuple[list[str], list[str]] = (["input"], ["logits"]),
    *,
    metadata: dict[str, str] | None = None,
    dynamic_batch: bool = False,
) -> None:
    require("onnx")
    require("onnxscript")
    import warnings

    # The exporter's graph passes log every rewrite at INFO.
    for name in ("onnx_ir", "onnxscript"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        inputs, outputs = names
        dynamic = {"dynamic_shapes": ({0: torch.export.Dim("batch")},)} if dynamic_batch else {}
        program = torch.onnx.export(
            model, (example,), dynamo=True, opset_version=opset, input_names=inputs, output_names=outputs,
            external_data=False, optimize=True, verbose=False, **dynamic,
        )  # fmt: skip
    program.save(str(path), external_data=False)
    if not (metadata or dynamic_batch):
        return
    onnx = require("onnx")
    proto = onnx.load(str(path))
    if dynamic_batch and not all(i.type.tensor_type.shape.dim[0].dim_param for i in proto.graph.input):
        # The tracer may fix the batch without a word (a detector's NMS loops over the images).
        raise ValueError(f"{getattr(model, 'name', 'this model')}'s graph fixes the batch size, so it cannot be "
                         "exported with --dynamic-batch; give a static --batch (detectors: or --no-nms)")  # fmt: skip
    if metadata:
        onnx.helper.set_model_props(proto, metadata)
        onnx.save(proto, str(path))


def _check_onnx(
    model: nn.Module, path: Path, reference: list[np.ndarray], example: np.ndarray, tolerance: float
) -> float:
    onnx = require("onnx")
    onnx.checker.check_model(str(path), full_check=True)
    error = output_error(model, ort_runner(path, all_outputs=True)(example), reference)
    if not error <= tolerance:
        raise ValueError(f"ONNX Runtime output differs from PyTorch by {error:.2e} (max relative error), "
                         f"more than the {tolerance:.0e} allowed; nothing was written")  # fmt: skip
    return error


def end_to_end(model: nn.Module, nms: bool = True) -> nn.Module:
    """What an export holds: a detector with its post-processing (NMS included) unless ``nms=False``."""
    with_postprocess = getattr(model, "with_postprocess", None)
    return with_postprocess() if nms and with_postprocess is not None else model


def output_error(model: nn.Module, outs: list[np.ndarray], refs: list[np.ndarray]) -> float:
    """The model's own comparison where it has one (detections: order of tied scores aside), else max rel error."""
    compare = getattr(model, "output_error", None)
    return compare(outs, refs) if compare is not None else max_rel_error_all(outs, refs)


def _prepare(model: nn.Module, shape: tuple, seed: int = 0) -> tuple[nn.Module, torch.Tensor, list[np.ndarray]]:
    # Export-friendly inference copy: BN folded, plain NCHW convolutions.
    inference = optimize(model, channels_last=False)
    example = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        reference = [t.numpy() for t in outputs_as_list(model.eval()(example))]
    return inference, example, reference


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    resolution: int | tuple[int, int] | None = None,
    batch: int = 1,
    opset: int = DEFAULT_OPSET,
    tolerance: float = DEFAULT_TOLERANCE,
    overwrite: bool = False,
    nms: bool = True,
    dynamic_batch: bool = False,
) -> ExportReport:
    """Export ``model`` to an ONNX file with BN folded and a static shape, checked in ONNX Runtime.

    A detector is exported end to end (decoding, NMS and padded final detections, see
    ``SSDLite.with_postprocess``) unless ``nms=False``, which keeps every decoded box and its scores.
    An existing file at ``path`` is replaced only with ``overwrite``. ``dynamic_batch``: any batch size
    runs (checked at ``max(batch, 2)``); the file's metadata says what the model expects (``describe``).
    """
    check_output(path, directory=False, overwrite=overwrite)
    shape = _shape(model, resolution, batch, dynamic_batch)
    metadata = describe(model, shape)
    model = end_to_end(model, nms)
    _check_opset(opset)
    inference, example, reference = _prepare(model, shape)
    errors: list[float] = []

    def write(tmp: Path) -> None:
        _write_onnx(inference, tmp, example, opset, names_of(model), metadata=metadata, dynamic_batch=dynamic_batch)
        errors.append(_check_onnx(model, tmp, reference, example.numpy(), tolerance))
        readable(tmp)

    atomic_write(path, write)
    log.debug("wrote %s (opset %d, input %s, max rel error vs PyTorch %.1e)", path, opset, shape, errors[0])
    return ExportReport(str(path), "onnx", shape, opset, errors[0], "onnxruntime", dynamic_batch)


def _shape(model: nn.Module, resolution, batch: int, dynamic_batch: bool) -> tuple:
    shape = input_shape_of(model, resolution, batch)
    # torch.export fixes a dimension of size 1 to a constant: trace (and check) a dynamic batch at 2 or more.
    return (max(shape[0], 2), *shape[1:]) if dynamic_batch else shape


def export_openvino(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    resolution: int | tuple[int, int] | None = None,
    batch: int = 1,
    opset: int = DEFAULT_OPSET,
    tolerance: float = DEFAULT_TOLERANCE,
    overwrite: bool = False,
    nms: bool = True,
    dynamic_batch: bool = False,
) -> ExportReport:
    """Export to OpenVINO IR (``path`` = FILE.xml, weights beside it in FILE.bin, fp32), checked in OpenVINO.

    A detector is exported end to end unless ``nms=False``, as ``export_onnx``. Existing FILE.xml /
    FILE.bin are replaced only with ``overwrite``.
    """
    ov = require("openvino")
    _check_opset(opset)
    path = Path(path)
    if path.suffix != ".xml":
        raise ValueError(f"an OpenVINO IR path must end in .xml (its weights go to a .bin beside it), got {path}")
    for target in (path, path.with_suffix(".bin")):
        check_output(target, directory=False, overwrite=overwrite)
    shape = _shape(model, resolution, batch, dynamic_batch)
    metadata = describe(model, shape)
    model = end_to_end(model, nms)
    inference, example, reference = _prepare(model, shape)
    tmp = temp_sibling(path, directory=True)  # swept by the next export if this process is killed
    try:
        onnx_path = tmp / "model.onnx"
        _write_onnx(inference, onnx_path, example, opset, names_of(model), dynamic_batch=dynamic_batch)
        require("onnx").checker.check_model(str(onnx_path), full_check=True)
        converted = ov.convert_model(str(onnx_path))
        for key, value in metadata.items():
            converted.set_rt_info(value, ["mobilenets", key])
        # compress_to_fp16 defaults to True: keep the weights fp32 so the IR matches PyTorch.
        ov.save_model(converted, str(tmp / "model.xml"), compress_to_fp16=False)
        error = output_error(model, ov_runner(tmp / "model.xml", all_outputs=True)(example.numpy()), reference)
        if not error <= tolerance:
            raise ValueError(f"OpenVINO output differs from PyTorch by {error:.2e} (max relative error), "
                             f"more than the {tolerance:.0e} allowed; nothing was written")  # fmt: skip
        for name in ("model.bin", "model.xml"):  # the umask's modes, as for any file the user writes
            os.chmod(tmp / name, default_mode())
        # Weights first, so that a reader never sees an .xml without its .bin.
        os.replace(tmp / "model.bin", path.with_suffix(".bin"))
        os.replace(tmp / "model.xml", path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.debug("wrote %s and %s (input %s, max rel error vs PyTorch %.1e)", path, path.with_suffix(".bin").name,
             shape, error)  # fmt: skip
    return ExportReport(str(path), "openvino", shape, None, error, "openvino", dynamic_batch)


def export(
    model: nn.Module,
    path: str | os.PathLike,
    format: str = "onnx",
    *,
    resolution: int | tuple[int, int] | None = None,
    batch: int = 1,
    opset: int = DEFAULT_OPSET,
    tolerance: float = DEFAULT_TOLERANCE,
    overwrite: bool = False,
    nms: bool = True,
    dynamic_batch: bool = False,
) -> ExportReport:
    """Export ``model`` to ``format`` (one of FORMATS) at ``path``, checked against PyTorch.

    A detector is exported with its NMS inside the graph unless ``nms=False``. An existing output
    file is replaced only with ``overwrite``. ``dynamic_batch``: the batch axis is free.
    """
    if format not in FORMATS:
        raise ValueError(f"unsupported export format {format!r}; supported: {', '.join(FORMATS)} "
                         "(docs/deployment.md says why there is no .tflite/.pte yet)")  # fmt: skip
    writer = export_onnx if format == "onnx" else export_openvino
    return writer(model, path, resolution=resolution, batch=batch, opset=opset, tolerance=tolerance,
                  overwrite=overwrite, nms=nms, dynamic_batch=dynamic_batch)  # fmt: skip


def default_output(model_dir: str | os.PathLike, format: str) -> Path:
    """MODEL_DIR/model.onnx or MODEL_DIR/openvino/model.xml; for shipped weights ``NAME.TAG``, files in the
    current directory: ./NAME.TAG.onnx or ./NAME.TAG.xml (never a ./NAME.TAG/ folder, which would hide them)."""
    from ..pretrained import shipped_name

    shipped = shipped_name(model_dir)
    if shipped is not None:
        return Path(shipped + SUFFIXES.get(format, ".onnx"))
    model_dir = Path(model_dir)
    return model_dir / "model.onnx" if format == "onnx" else model_dir / "openvino" / "model.xml"
