"""The measured fp32 FMA peak of one core: the yardstick for "achieved GFLOP/s, share of peak".

A C loop of independent FMA chains (compiled with the system C compiler when there is one)
gives the FMA peak; without a compiler, a single-threaded sgemm is used instead and the
result says so.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

# 12 independent accumulator chains hide the 4-cycle FMA latency on 2 pipes; AVX2 FMA on 8 floats.
_FMA_SOURCE = r"""
#include <immintrin.h>
#define STEP(v) v = _mm256_fmadd_ps(v, m, c)
float fma_loop(long iters) {
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    __m256 a0 = _mm256_set1_ps(0.f), a1 = _mm256_set1_ps(1.f), a2 = _mm256_set1_ps(2.f), a3 = _mm256_set1_ps(3.f);
    __m256 a4 = _mm256_set1_ps(4.f), a5 = _mm256_set1_ps(5.f), a6 = _mm256_set1_ps(6.f), a7 = _mm256_set1_ps(7.f);
    __m256 a8 = _mm256_set1_ps(8.f), a9 = _mm256_set1_ps(9.f), a10 = _mm256_set1_ps(10.f), a11 = _mm256_set1_ps(11.f);
    for (long n = 0; n < iters; n++) {
        STEP(a0); STEP(a1); STEP(a2); STEP(a3); STEP(a4); STEP(a5);
        STEP(a6); STEP(a7); STEP(a8); STEP(a9); STEP(a10); STEP(a11);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0];
}
"""
_FLOPS_PER_ITER = 12 * 8 * 2


def _fma_peak() -> float | None:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src, lib = Path(tmp) / "fma.c", Path(tmp) / "fma.so"
        src.write_text(_FMA_SOURCE)
        try:
            subprocess.run([compiler, "-O2", "-mavx2", "-mfma", "-shared", "-fPIC", str(src), "-o", str(lib)],
                           check=True, capture_output=True, timeout=60)  # fmt: skip
            fn = ctypes.CDLL(str(lib)).fma_loop
        except (OSError, subprocess.SubprocessError):
            return None
        fn.argtypes, fn.restype = [ctypes.c_long], ctypes.c_float
        iters = 2_000_000
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            fn(iters)
            best = min(best, time.perf_counter() - start)
        return iters * _FLOPS_PER_ITER / best / 1e9


def _sgemm_peak() -> float:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b = torch.randn(512, 512), torch.randn(512, 512)
        best = float("inf")
        for _ in range(10):
            start = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return 2 * 512**3 / best / 1e9


@functools.cache
def core_peak_gflops() -> tuple[float, str]:
    """(GFLOP/s of one core, how it was measured); cached for the process."""
    peak = _fma_peak()
    if peak is not None:
        return peak, "FMA loop"
    log.info("no C compiler found: using single-threaded sgemm as the fp32 peak")
    return _sgemm_peak(), "sgemm"
