"""``export``, ``quantize`` and ``bench``: from a model directory to a checked, timed deployable artifact."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from . import resolution_arg

log = logging.getLogger(__name__)


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model directory to ONNX or OpenVINO IR, checked against PyTorch")
    p.add_argument("model_dir", help="model directory (model.safetensors + config.json)")
    p.add_argument("--format", "-f", default="onnx", help="onnx (default) or openvino")
    p.add_argument("-o", "--output", help="output file (default MODEL_DIR/model.onnx or MODEL_DIR/openvino/model.xml; "
                   "for shipped weights NAME.TAG: ./NAME.TAG.onnx or ./NAME.TAG.xml)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--resolution", "-r", type=resolution_arg,
                   help="input size, 224 or HxW such as 224x160 (default: the config preprocessing)")  # fmt: skip
    p.add_argument("--batch", type=int, default=1, help="static batch size (default 1)")
    p.add_argument("--dynamic-batch", action="store_true", help="let the batch axis take any size (checked at 2)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 20)")
    p.add_argument("--no-nms", action="store_true",
                   help="detectors: export every decoded box and its class scores instead of the final "
                        "detections (decoding and NMS inside the graph, the default)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the export report as JSON")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("quantize", help="INT8 post-training quantization calibrated on real images, with evaluation")
    p.add_argument("model_dir", help="model directory (model.safetensors + config.json)")
    p.add_argument("--data", required=True, help="image folder (DATA/<class>/<image>) or MNIST-style IDX directory")
    p.add_argument("--calibration", type=int, default=200, help="calibration images (default 200)")
    p.add_argument("--eval-images", type=int, default=1000, help="evaluation images (default 1000)")
    p.add_argument("-o", "--output", help="INT8 QDQ ONNX file (default MODEL_DIR/model.int8.onnx; "
                   "./NAME.TAG.int8.onnx for shipped weights)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--keep-float", default="auto", help="auto (SE in float when present), none, se, se+ends")
    p.add_argument("--method", default="minmax", help="calibration: minmax (default), percentile, entropy")
    p.add_argument("--runtime", default="onnxruntime", help="evaluate in onnxruntime (default) or openvino")
    p.add_argument("--threads", type=int, default=1, help="threads for the latency figures (default 1)")
    p.add_argument("--max-drop", default="1.0",
                   help="top-1 points INT8 may lose on held-out images before early convs fall back to float "
                        "(default 1.0; 'off' disables)")  # fmt: skip
    p.add_argument("--validation", type=int, default=1000, help="held-out images for --max-drop (default 1000)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("bench", help="batch latency in every installed runtime, measured side by side")
    p.add_argument("targets", nargs="+", metavar="NAME_or_DIR",
                   help="registered model names, model directories or shipped weights NAME.TAG")  # fmt: skip
    p.add_argument("--runtimes", help="comma list (default eager,optimized,onnxruntime,openvino), 'fp32' or 'all'")
    p.add_argument("--threads", default="1", help="comma list of thread counts (default 1)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--resolution", "-r", type=resolution_arg,
                   help="input size, 224 or HxW (default: the model's preprocessing, else 224)")  # fmt: skip
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (default 5)")
    p.add_argument("--round-seconds", type=float, default=0.3, help="seconds per configuration per round")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.add_argument("--plot", metavar="FILE.png", help="draw latency vs MAdds (and vs top-1 when known)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --plot file")
    p.add_argument("--device", default="cpu",
                   help="cpu (default) or cuda / cuda:N: times the PyTorch runtimes (default eager,optimized) "
                        "on the GPU; an error when CUDA is not available")  # fmt: skip
    p.set_defaults(func=cmd_bench)


def _runtime_error(err: ImportError) -> ValueError:
    # cli.main turns ValueError into a one-line error; a missing optional package is bad input here.
    return ValueError(str(err))


def cmd_export(args) -> int:
    from ..deploy.exporter import DEFAULT_OPSET, default_output, export
    from ..io import load_model

    model = load_model(args.model_dir)
    output = Path(args.output) if args.output else default_output(args.model_dir, args.format)
    try:
        report = export(model, output, args.format, resolution=args.resolution, batch=args.batch,
                        opset=args.opset or DEFAULT_OPSET, overwrite=args.overwrite, nms=not args.no_nms,
                        dynamic_batch=args.dynamic_batch)  # fmt: skip
    except ImportError as err:
        raise _runtime_error(err) from None
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        shape = "x".join(map(str, ("N", *report.input_shape[1:]) if report.dynamic_batch else report.input_shape))
        print(f"wrote {report.path} ({report.format}, input {shape}); checked in {report.runtime}: "
              f"max relative error vs PyTorch {report.max_rel_error:.1e}")  # fmt: skip
    return 0


def default_int8_output(model_dir: str) -> Path:
    """MODEL_DIR/model.int8.onnx; ./NAME.TAG.int8.onnx for shipped weights (as export's default)."""
    from ..pretrained import shipped_name

    shipped = shipped_name(model_dir)
    return Path(f"{shipped}.int8.onnx") if shipped else Path(model_dir) / "model.int8.onnx"


def cmd_quantize(args) -> int:
    from ..deploy.quantize import quantize_model
    from ..io import load_model

    try:
        max_drop = None if args.max_drop == "off" else float(args.max_drop)
    except ValueError:
        raise ValueError(f"--max-drop takes a number of top-1 points or 'off', got {args.max_drop!r}") from None
    model = load_model(args.model_dir)
    output = Path(args.output) if args.output else default_int8_output(args.model_dir)
    try:
        report = quantize_model(model, output, args.data, calibration=args.calibration, eval_images=args.eval_images,
                                keep_float=args.keep_float, method=args.method, runtime=args.runtime,
                                threads=args.threads, max_drop=max_drop, validation=args.validation,
                                overwrite=args.overwrite)  # fmt: skip
    except ImportError as err:
        raise _runtime_error(err) from None
    if args.json:
        print(json.dumps(report.as_dict()))
        return 0
    print(
        f"wrote {report.output} (INT8 QDQ, per-channel weights; {report.float_nodes} nodes kept in float: "
        f"--keep-float {report.keep_float}; calibrated on {report.calibration_images} images, {report.method})"
    )
    print(
        f"{'':<8} {'top-1 %':>8} {'latency ms':>11}   ({report.runtime}, {report.threads} thread(s), "
        f"{report.eval_images} images)"
    )
    print(f"{'fp32':<8} {report.top1_fp32:>8.2f} {report.latency_fp32_ms:>11.2f}")
    print(f"{'int8':<8} {report.top1_int8:>8.2f} {report.latency_int8_ms:>11.2f}")
    print(f"change   {-report.top1_drop:>+8.2f} {report.speedup:>10.2f}x faster")  # fmt: skip
    return 0


def load_target(target: str):
    """A model directory, shipped weights NAME.TAG, or a registered name (random weights: latency does not
    depend on them)."""
    from ..io import load_model
    from ..models.factory import create_model
    from ..pretrained import resolve

    path = resolve(target)
    if path.is_dir():
        return load_model(path)
    if path.suffix or "/" in target:
        raise FileNotFoundError(f"{target} is neither a model directory nor a registered model name")
    return create_model(target).eval()


def cmd_bench(args) -> int:
    from ..deploy.bench import INT8_FILE, bench_models, format_table, parse_runtimes, parse_threads, plot
    from ..devices import resolve_device
    from ..pretrained import resolve, shipped_name

    resolve_device(args.device)  # a wrong --device is the first error, before any model is built
    runtimes = parse_runtimes(args.runtimes) if args.runtimes or args.device == "cpu" else None
    threads = parse_threads(args.threads)
    if args.batch < 1 or args.rounds < 1 or args.round_seconds <= 0:
        raise ValueError("--batch and --rounds must be >= 1 and --round-seconds > 0")
    if args.plot and Path(args.plot).suffix.lower() not in (".png", ".svg", ".pdf"):
        raise ValueError(f"--plot writes .png, .svg or .pdf, got {args.plot}")
    if args.plot:  # before minutes of timing: an existing picture is replaced only when asked
        from ..io import check_output

        check_output(args.plot, directory=False, overwrite=args.overwrite)
    models, int8_paths = {}, {}
    for target in args.targets:
        model = load_target(target)
        key = model.name if model.name not in models else f"{model.name}#{len(models)}"
        models[key] = model
        int8 = default_int8_output(target) if shipped_name(target) else resolve(target) / INT8_FILE
        if int8.is_file():
            int8_paths[key] = int8
    try:
        results = bench_models(models, runtimes=runtimes, threads=threads, batch=args.batch,
                               resolution=args.resolution, int8_paths=int8_paths, rounds=args.rounds,
                               round_seconds=args.round_seconds, device=args.device)  # fmt: skip
    except ImportError as err:
        raise _runtime_error(err) from None
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=1))
    else:
        print(format_table(results))
    if args.plot:
        log.info("wrote %s", plot(results, args.plot))
    return 0
