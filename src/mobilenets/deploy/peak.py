"""The measured fp32 and int8 peaks of one core, and the CPU features that decide INT8 and bf16 speed.

C loops of independent multiply-add chains, compiled with the system C compiler, give the
peaks, each with the widest instructions the CPU's flags name: AVX-512 FMA (16 floats) when
``avx512f`` is there, else AVX2 FMA (8 floats) for fp32; AMX (``amx_int8``), else VNNI
(AVX512-VNNI, AVX-VNNI) for int8. A 256-bit loop on an AVX-512 CPU measures half the fp32
peak, so that runtimes using the 512-bit units would read 200% of it. Without a compiler (or
without AVX2), a single-threaded sgemm stands in for the fp32 peak and the result says so; without
VNNI or AMX there is no int8 peak.

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

# 12 independent accumulator chains hide the 4-5 cycle latency of FMA / VNNI on 2 pipes.
_CHAINS = 12
_VECTOR_LOOP = r"""
#include <immintrin.h>
#define STEP(v) v = OP(v, m, c)
double peak_loop(long iters) {
    const VEC m = SET1(M), c = SET1(C);
    VEC a[12];
    for (int i = 0; i < 12; i++) a[i] = SET1(i);
    VEC a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3], a4 = a[4], a5 = a[5];
    VEC a6 = a[6], a7 = a[7], a8 = a[8], a9 = a[9], a10 = a[10], a11 = a[11];
    for (long n = 0; n < iters; n++) {
        STEP(a0); STEP(a1); STEP(a2); STEP(a3); STEP(a4); STEP(a5);
        STEP(a6); STEP(a7); STEP(a8); STEP(a9); STEP(a10); STEP(a11);
    }
    VEC s = ADD(ADD(ADD(a0, a1), ADD(a2, a3)), ADD(ADD(a4, a5), ADD(a6, a7)));
    s = ADD(s, ADD(ADD(a8, a9), ADD(a10, a11)));
    ELEM out[LANES];
    STORE((void *)out, s);
    return (double)out[0];
}
"""

# AMX: 4 tile accumulators, each TDPBSSD a 16x16 int32 tile += 16x64 int8 by 64x16 int8.
_AMX_LOOP = r"""
#include <immintrin.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
typedef struct {
    unsigned char palette_id, start_row, reserved[14];
    unsigned short colsb[16];
    unsigned char rows[16];
} tilecfg;
double peak_loop(long iters) {
    /* Linux hands out the AMX tile state only on request (ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA). */
    if (syscall(SYS_arch_prctl, 0x1023, 18)) return -1.0;
    tilecfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette_id = 1;
    for (int i = 0; i < 8; i++) { cfg.rows[i] = 16; cfg.colsb[i] = 64; }
    _tile_loadconfig(&cfg);
    static signed char a[16 * 64], b[16 * 64];
    static int out[16 * 16];
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
    _tile_loadd(4, a, 64); _tile_loadd(5, a, 64); _tile_loadd(6, b, 64); _tile_loadd(7, b, 64);
    for (long n = 0; n < iters; n++) {
        _tile_dpbssd(0, 4, 6); _tile_dpbssd(1, 4, 7); _tile_dpbssd(2, 5, 6); _tile_dpbssd(3, 5, 7);
    }
    _tile_stored(0, out, 64);
    _tile_release();
    return (double)out[0];
}
"""


@dataclass(frozen=True)
class PeakKernel:
    """One peak loop: the CPU flags it needs, how to compile it, and the operations one iteration does."""

    name: str  # as printed: "AVX-512 FMA"
    flags: tuple[str, ...]  # all of these /proc/cpuinfo flags are needed
    cflags: tuple[str, ...]
    source: str
    ops_per_iter: int  # FLOPs or int ops, a multiply-add counted as 2
    iters: int


def _vector_kernel(name, flags, cflags, *, vec, set1, op, add, store, elem, lanes, macs_per_lane, iters):
    m, c = ("1", "1") if elem == "int" else ("0.999999f", "1e-7f")  # int32 lanes wrap around harmlessly
    defines = {"VEC": vec, "SET1": set1, "OP": op, "ADD": add, "STORE": store, "ELEM": elem, "LANES": lanes, "M": m,
               "C": c}  # fmt: skip
    header = "".join(f"#define {k} {v}\n" for k, v in defines.items())
    return PeakKernel(name, flags, cflags, header + _VECTOR_LOOP, _CHAINS * lanes * macs_per_lane * 2, iters)


# Widest first: the first kernel whose flags the CPU has and that compiles and runs is the peak.
FP32_KERNELS = (
    _vector_kernel("AVX-512 FMA", ("avx512f",), ("-mavx512f",), vec="__m512", set1="_mm512_set1_ps",
                   op="_mm512_fmadd_ps", add="_mm512_add_ps", store="_mm512_storeu_ps", elem="float",
                   lanes=16, macs_per_lane=1, iters=2_000_000),
    _vector_kernel("AVX2 FMA", ("avx2",), ("-mavx2", "-mfma"), vec="__m256", set1="_mm256_set1_ps",
                   op="_mm256_fmadd_ps", add="_mm256_add_ps", store="_mm256_storeu_ps", elem="float",
                   lanes=8, macs_per_lane=1, iters=2_000_000),
)  # fmt: skip
INT8_KERNELS = (
    PeakKernel("AMX-INT8", ("amx_int8",), ("-mamx-tile", "-mamx-int8"), _AMX_LOOP, 4 * 16 * 16 * 64 * 2, 100_000),
    _vector_kernel("AVX512-VNNI", ("avx512_vnni",), ("-mavx512f", "-mavx512vnni"), vec="__m512i",
                   set1="_mm512_set1_epi32", op="_mm512_dpbusd_epi32", add="_mm512_add_epi32",
                   store="_mm512_storeu_si512", elem="int", lanes=16, macs_per_lane=4, iters=1_000_000),
    _vector_kernel("AVX-VNNI", ("avx_vnni",), ("-mavx2", "-mavxvnni"), vec="__m256i", set1="_mm256_set1_epi32",
                   op="_mm256_dpbusd_avx_epi32", add="_mm256_add_epi32", store="_mm256_storeu_si256",
                   elem="int", lanes=8, macs_per_lane=4, iters=1_000_000),
)  # fmt: skip


def run_kernel(kernel: PeakKernel, repeats: int = 7) -> float | None:
    """Best-of-``repeats`` G(FL)OP/s of one kernel on one core, or None when it cannot be compiled or run."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src, lib = Path(tmp) / "peak.c", Path(tmp) / "peak.so"
        src.write_text(kernel.source)
        try:
            subprocess.run([compiler, "-O2", *kernel.cflags, "-shared", "-fPIC", str(src), "-o", str(lib)],
                           check=True, capture_output=True, timeout=60)  # fmt: skip
            fn = ctypes.CDLL(str(lib)).peak_loop
        except (OSError, subprocess.SubprocessError):
            log.debug("cannot build the %s peak loop", kernel.name)
            return None
        fn.argtypes, fn.restype = [ctypes.c_long], ctypes.c_double
        if fn(1) < 0:  # the loop refused (AMX state not granted by the kernel)
            return None
        best = float("inf")
        for _ in range(repeats):  # the first runs also wake the wide units up to full speed
            start = time.perf_counter()
            fn(kernel.iters)
            best = min(best, time.perf_counter() - start)
        return kernel.iters * kernel.ops_per_iter / best / 1e9


def _widest(kernels: tuple[PeakKernel, ...], flags: tuple[str, ...]) -> tuple[float, str] | None:
    for kernel in kernels:
        if all(f in flags for f in kernel.flags):
            peak = run_kernel(kernel)
            if peak is not None:
                return peak, f"{kernel.name} loop"
    return None


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
    """(fp32 GFLOP/s of one core, how it was measured), with the widest FMA the CPU has; cached."""
    found = _widest(FP32_KERNELS, cpu_features().flags)
    if found is not None:
        return found
    log.info("no C compiler or no AVX2: using single-threaded sgemm as the fp32 peak")
    return _sgemm_peak(), "sgemm"


@functools.cache
def core_int8_peak_gops() -> tuple[float | None, str]:
    """(int8 GOP/s of one core, how it was measured): AMX, else VNNI; (None, why) without either; cached."""
    found = _widest(INT8_KERNELS, cpu_features().flags)
    if found is not None:
        return found
    if not cpu_features().int8_dot:
        return None, "no VNNI or AMX"
    return None, "no C compiler for the VNNI/AMX loop"
