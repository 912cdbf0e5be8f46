"""Deployment: inference rewrites, checked export (ONNX, OpenVINO IR), INT8 quantization, latency benchmarks.

Everything beyond ``optimize`` imports its runtime (onnx, onnxruntime, openvino) lazily.
"""

from .optimize import fold_batchnorm, optimize

__all__ = ["bench_models", "export", "fold_batchnorm", "optimize", "quantize_model"]


def __getattr__(name: str):
    # Lazy: keep `import mobilenets` free of onnx/openvino imports.
    if name == "export":
        from .export import export

        return export
    if name == "quantize_model":
        from .quantize import quantize_model

        return quantize_model
    if name == "bench_models":
        from .bench import bench_models

        return bench_models
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
