"""Our deployment paths beside the peers' (torchvision models through the same runtimes), interleaved.

Bars (issue 5): (1) our fastest fp32 path <= the fastest fp32 peer path, for V2, V3-Large and
V3-Small at 1 and 2 threads; (2) our INT8 >= 2x ONNX Runtime fp32 for V2 at 1 thread, and faster
than the fastest fp32 path for V3; (3) optimize() eager >= 1.5x torchvision eager.

Every configuration of one model and thread count is timed round-robin in this one process, so
machine noise falls on ours and the peers alike; compare the ratios, not absolute times.
Weights are random (latency does not depend on them); INT8 models are calibrated on random
inputs here, for timing only (accuracy: benchmarks/int8_accuracy.py).

    PYTHONPATH=src python benchmarks/deploy_vs_peers.py                 # ~4.5 min on a quiet 2-core machine
    PYTHONPATH=src python benchmarks/deploy_vs_peers.py --models mobilenet_v3_small --threads 1 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

from mobilenets import create_model, optimize
from mobilenets.deploy.bench import summarize, time_interleaved
from mobilenets.deploy.exporter import export_onnx
from mobilenets.deploy.peak import core_peak_gflops, cpu_features
from mobilenets.deploy.quantize import quantize_onnx
from mobilenets.deploy.runtimes import ort_runner, ov_runner

MODELS = {
    "mobilenet_v2": ("mobilenet_v2_100", torchvision.models.mobilenet_v2),
    "mobilenet_v3_large": ("mobilenet_v3_large_100", torchvision.models.mobilenet_v3_large),
    "mobilenet_v3_small": ("mobilenet_v3_small_100", torchvision.models.mobilenet_v3_small),
}
FP32 = ("eager", "optimized", "compile", "ort", "ov")


def _torch(module, threads):
    def run(x):
        torch.set_num_threads(threads)
        with torch.inference_mode():
            return module(torch.from_numpy(x))

    return run


def _peer_onnx(model, path: Path) -> None:
    # What a torchvision user does: the default exporter on the model as is (BN left to the runtime).
    with torch.no_grad():
        torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), str(path), dynamo=True, opset_version=20,
                          input_names=["input"], external_data=False, verbose=False)  # fmt: skip


def build(family: str, tmp: Path, compile_: bool) -> dict[str, dict]:
    """Artifacts for ours and the peer: torch modules and ONNX files (fp32, INT8)."""
    ours_name, peer_ctor = MODELS[family]
    ours = create_model(ours_name).eval()
    peer = peer_ctor().eval()
    rng = np.random.default_rng(0)
    calib = [rng.standard_normal((1, 3, 224, 224), dtype=np.float32) for _ in range(8)]
    out = {"ours": {"eager": ours, "optimized": optimize(ours)}, "peer": {"eager": peer}}
    export_onnx(ours, tmp / f"{family}.ours.onnx", resolution=224)
    _peer_onnx(peer, tmp / f"{family}.peer.onnx")
    out["ours"]["onnx"], out["peer"]["onnx"] = tmp / f"{family}.ours.onnx", tmp / f"{family}.peer.onnx"
    for who in ("ours", "peer"):
        # Peers: everything quantized (what the peer baseline did); ours: our default policy too.
        policies = {"int8": "none"} if who == "peer" else {"int8": "none", "int8-sefloat": "se"}
        for key, policy in policies.items():
            path = tmp / f"{family}.{who}.{key}.onnx"
            quantize_onnx(out[who]["onnx"], path, calib, keep_float=policy)
            out[who][key] = path
    if compile_:
        for who in ("ours", "peer"):
            base = out[who]["optimized"] if who == "ours" else out[who]["eager"]
            out[who]["compile"] = torch.compile(base)
    return out


def runners(art: dict, threads: int) -> dict[str, object]:
    table = {}
    for who, items in art.items():
        for key in ("eager", "optimized", "compile"):
            if key in items:
                table[f"{who}:{key}"] = _torch(items[key], threads)
        table[f"{who}:ort"] = ort_runner(items["onnx"], threads)
        table[f"{who}:ov"] = ov_runner(items["onnx"], threads)
        table[f"{who}:ov-bf16"] = ov_runner(items["onnx"], threads, "bf16")
        for key in items:
            if key.startswith("int8"):
                table[f"{who}:ort-{key}"] = ort_runner(items[key], threads)
                table[f"{who}:ov-{key}"] = ov_runner(items[key], threads)
                table[f"{who}:ov-{key}-bf16"] = ov_runner(items[key], threads, "bf16")
    return table


def _best(med: dict, who: str, keep) -> tuple[float, str]:
    """(median ms, path) of the fastest of ``who``'s paths that ``keep`` accepts."""
    return min((m, k.split(":")[1]) for k, (m, _) in med.items() if k.startswith(who + ":") and keep(k.split(":")[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help="comma list of " + ", ".join(MODELS))
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--round-seconds", type=float, default=0.25)
    parser.add_argument("--compile", action="store_true", help="add torch.compile paths (30+ s compile each)")
    parser.add_argument("--json", help="also write every median/p90 to this JSON file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    threads = [int(t) for t in args.threads.split(",")]
    peak, how = core_peak_gflops()
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224), dtype=np.float32)
    rows, summary = [], []
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.models.split(","):
            art = build(family, Path(tmp), args.compile)
            for n in threads:
                table = runners(art, n)
                times = time_interleaved(table, x, warmup=10, rounds=args.rounds, round_seconds=args.round_seconds)
                med = {k: summarize(v) for k, v in times.items()}
                for k, (m, p) in med.items():
                    rows.append({"model": family, "threads": n, "path": k, "median_ms": m, "p90_ms": p,
                                 "samples": len(times[k])})  # fmt: skip
                fp32 = lambda who, med=med: _best(med, who, lambda path: path in FP32)  # noqa: E731
                int8 = lambda who, med=med: _best(med, who, lambda path: "int8" in path and "bf16" not in path)  # noqa: E731
                int8_bf16 = _best(med, "ours", lambda path: "int8" in path and "bf16" in path)
                ours_fp32, peer_fp32 = fp32("ours"), fp32("peer")
                ours_int8, peer_int8 = int8("ours"), int8("peer")
                summary.append({
                    "model": family, "threads": n,
                    "ours_fp32": ours_fp32, "peer_fp32": peer_fp32, "bar1_ratio": ours_fp32[0] / peer_fp32[0],
                    "optimized_vs_tv_eager": med["peer:eager"][0] / med["ours:optimized"][0],
                    "ours_int8": ours_int8, "int8_vs_ort_fp32": med["ours:ort"][0] / ours_int8[0],
                    "int8_vs_fastest_fp32": min(ours_fp32[0], peer_fp32[0]) / ours_int8[0],
                    "peer_int8": peer_int8, "peer_int8_vs_peer_ort_fp32": med["peer:ort"][0] / peer_int8[0],
                    "ours_int8_bf16": int8_bf16,
                    "int8_bf16_vs_fastest_fp32": min(ours_fp32[0], peer_fp32[0]) / int8_bf16[0],
                })  # fmt: skip
                print(f"[{time.time() - started:.0f}s] {family} t={n} done", flush=True)
    paths = sorted({r["path"].split(":")[1] for r in rows}, key=lambda p: (p not in FP32, p))
    print(
        f"\n## Latency, median / p90 ms (batch 1, 224x224; ours | torchvision), peak {peak:.0f} GFLOP/s/core ({how})\n"
    )
    print("| model | thr | " + " | ".join(paths) + " |")
    print("|---|---:|" + "---:|" * len(paths))
    for family in args.models.split(","):
        for n in threads:
            cells = []
            for p in paths:
                got = {r["path"].split(":")[0]: r for r in rows if r["model"] == family and r["threads"] == n
                       and r["path"].split(":")[1] == p}  # fmt: skip
                cells.append(" / ".join(f"{got[w]['median_ms']:.2f}" if w in got else "-" for w in ("ours", "peer")))
            print(f"| {family} | {n} | " + " | ".join(cells) + " |")
    print("\n## Bars\n")
    print(
        "| model | thr | our fastest fp32 | peer fastest fp32 | bar 1 ratio (<=1) | optimize vs tv eager (>=1.5) |"
        " our fastest int8 | int8 vs our ORT fp32 | int8 vs fastest fp32 | peer fastest int8 | peer int8 vs peer ORT |"
        " our int8 + bf16 leftovers | vs fastest fp32 |"
    )
    print("|---|---:|---|---|---:|---:|---|---:|---:|---|---:|---|---:|")
    for s in summary:
        print(f"| {s['model']} | {s['threads']} | {s['ours_fp32'][1]} {s['ours_fp32'][0]:.2f} | "
              f"{s['peer_fp32'][1]} {s['peer_fp32'][0]:.2f} | {s['bar1_ratio']:.2f} | "
              f"{s['optimized_vs_tv_eager']:.2f}x | "
              f"{s['ours_int8'][1]} {s['ours_int8'][0]:.2f} | {s['int8_vs_ort_fp32']:.2f}x | "
              f"{s['int8_vs_fastest_fp32']:.2f}x | {s['peer_int8'][1]} {s['peer_int8'][0]:.2f} | "
              f"{s['peer_int8_vs_peer_ort_fp32']:.2f}x | "
              f"{s['ours_int8_bf16'][1]} {s['ours_int8_bf16'][0]:.2f} | "
              f"{s['int8_bf16_vs_fastest_fp32']:.2f}x |")  # fmt: skip
    print(f"\ncpu: {cpu_features().summary()}")
    print(
        f"fp32 paths: {', '.join(FP32)}; ov-bf16 is reported but is not fp32. Whole run {time.time() - started:.0f}s."
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
