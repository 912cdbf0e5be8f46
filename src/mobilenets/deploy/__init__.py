"""Deployment: inference rewrites, checked export (ONNX, OpenVINO IR), INT8 quantization, latency benchmarks.

Everything beyond ``optimize`` imports its runtime (onnx, onnxruntime, openvino) lazily.
"""

from .optimize import fold_batchnorm, optimize

__all__ = ["bench_models", "export", "fold_batchnorm", "metadata_of", "optimize", "quantize_model"]


_LAZY = {"export": ".exporter", "metadata_of": ".exporter", "quantize_model": ".quantize", "bench_models": ".bench"}


def __getattr__(name: str):
    # Lazy: keep `import mobilenets` free of onnx/openvino imports.
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name], __name__), name)
