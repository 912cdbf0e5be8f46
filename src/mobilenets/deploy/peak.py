"""The measured fp32 FMA peak of one core, and the CPU features that decide INT8 and bf16 speed.

A C loop of independent FMA chains (compiled with the system C compiler when there is one)
gives the FMA peak; without a compiler, a single-threaded sgemm is used instead and the
result says so.

INT8 and bf16 speed-ups depend on the instruction set more than on the runtime: with VNNI
(AVX512-VNNI or AVX-VNNI) one instruction does 4 int8 multiply-adds into int32; without it,
AVX2 needs three (vpmaddubsw, vpmaddwd, vpaddd), so INT8 convs run at most ~2x fp32 and
depthwise convs barely gain. bf16 compute needs AVX512-BF16 or AMX; without them OpenVINO's
bf16 hint is ignored. ``cpu_features`` says which of these the machine has, so that a latency
table carries its hardware context.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
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


# The /proc/cpuinfo flags that decide fp32 width (avx2, avx512f), INT8 dot products (VNNI, AMX) and bf16.
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")


@dataclass(frozen=True)
class CpuFeatures:
    model: str
    flags: tuple[str, ...]  # the ISA_FLAGS this CPU has

    @property
    def int8_dot(self) -> bool:
        return any(f in self.flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))

    @property
    def bf16_dot(self) -> bool:
        return any(f in self.flags for f in ("avx512_bf16", "amx_bf16"))

    def summary(self) -> str:
        isa = ", ".join(self.flags) or "none of the x86 SIMD flags"
        notes = []
        if not self.int8_dot:
            notes.append("no VNNI: INT8 convs gain at most ~2x over fp32")
        if not self.bf16_dot:
            notes.append("no native bf16: bf16 modes run at fp32 speed or slower")
        return f"{self.model} ({isa})" + (f"; {'; '.join(notes)}" if notes else "")


def parse_cpuinfo(text: str) -> CpuFeatures:
    """The model name and the ``ISA_FLAGS`` of the first processor in a /proc/cpuinfo text."""
    model, flags = "unknown CPU", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == "unknown CPU":
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return CpuFeatures(model, tuple(f for f in ISA_FLAGS if f in flags))


@functools.cache
def cpu_features() -> CpuFeatures:
    """This machine's CPU model and INT8/bf16-relevant instruction sets (Linux; "unknown" elsewhere)."""
    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        import platform

        return CpuFeatures(platform.processor() or "unknown CPU", ())


@functools.cache
def core_peak_gflops() -> tuple[float, str]:
    """(GFLOP/s of one core, how it was measured); cached for the process."""
    peak = _fma_peak()
    if peak is not None:
        return peak, "FMA loop"
    log.info("no C compiler found: using single-threaded sgemm as the fp32 peak")
    return _sgemm_peak(), "sgemm"
