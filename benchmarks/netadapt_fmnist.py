"""NetAdapt bar (issue 18): adapted widths vs uniform width multipliers at <= 60% of the seed's latency.

One command, ~60 min on 2 quiet cores (resumable: run it again with the same --out to continue):

    PYTHONPATH=src python benchmarks/netadapt_fmnist.py --out runs/netadapt_fmnist

1. trains the seed with the main job's recipe (MobileNetV3-Small, stem stride 1, 1-channel input,
   32x32 Fashion-MNIST, recipe ``main`` cut to 3 epochs) unless ``--seed-dir`` gives one;
2. ``mobilenets adapt`` on ONNX Runtime, 1 thread, 64x64: target 0.6 x the seed's measured
   latency, delta 0.05 per step, 40-step fine-tunes of batch 128 per proposal, a 5000-image
   holdout carved from the training split, criterion ``slope``;
3. the two uniform width multipliers of V3-Small whose predicted latency brackets the adapted
   network's, with the same short fine-tune;
4. finish: the adapted network and both baselines fine-tuned by the same recipe (``--finish``,
   ``--finish-epochs``), evaluated on the test split; all latencies from one interleaved timing.

Prints seed / adapted / uniform latency and accuracy, the latency table's error after
calibration, and the CPU. Everything is in OUT/adapt (history.json, pareto.png, model dirs).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from mobilenets.commands.adapt import summary_table
from mobilenets.search.netadapt import CONFIG_FILE, AdaptConfig, adapt, read_adapt_config
from mobilenets.training import TrainConfig, train
from mobilenets.training.checkpoint import BEST_DIR, is_run_dir


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/netadapt_fmnist")
    p.add_argument("--seed-dir", help="an existing model dir or run dir to adapt (default: train one)")
    p.add_argument("--seed-epochs", type=int, default=3)
    p.add_argument("--seed-recipe", default="main")
    p.add_argument("--stem-stride", type=int, default=1)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--target", default="0.6")
    p.add_argument("--delta", type=float, default=0.05)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--runtime", default="onnxruntime")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--finish", default="finetune", choices=["finetune", "scratch", "none"])
    p.add_argument("--finish-epochs", type=int, default=2)
    p.add_argument("--uniform", default="auto")
    p.add_argument("--holdout", type=int, default=5000)
    p.add_argument("--max-steps", type=int, default=50)
    p.add_argument("--train-limit", type=int, default=0, help="(smoke runs only)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(args.out)
    started = time.time()
    seed = args.seed_dir
    if seed is None:
        run = out / "seed"
        if not (run / "report.json").is_file():
            config = TrainConfig(model="mobilenet_v3_small_100", output=str(run), data="fashion-mnist",
                                 resolution=args.resolution, in_chans=1, stem_stride=args.stem_stride,
                                 epochs=args.seed_epochs, recipe=args.seed_recipe,
                                 tensorboard=False, workers=0)  # fmt: skip
            train(config, resume=is_run_dir(run))
        seed = str(run / BEST_DIR)
    job = out / "adapt"
    config = AdaptConfig(model=seed, output=str(job), data="fashion-mnist", target=args.target,
                         runtime=args.runtime, threads=args.threads, delta=args.delta, steps=args.steps,
                         batch_size=128, holdout=args.holdout, finish=args.finish, finish_epochs=args.finish_epochs,
                         uniform=args.uniform, max_steps=args.max_steps, train_limit=args.train_limit,
                         progress=True)  # fmt: skip
    resume = (job / CONFIG_FILE).is_file()
    if resume:
        config = read_adapt_config(job)
    history = adapt(config, resume=resume)
    print()
    print(summary_table(history))
    measured = history["comparison"]["measured_ms"]
    finish = history.get("finish") or {}
    print("\n| network | measured ms | % of seed | holdout top-1 | test top-1 |")
    print("|---|---|---|---|---|")
    rows = [("seed", history["seed"]["holdout_top1"]), ("adapted", (history["steps"] or [history["seed"]])[-1]
            ["holdout_top1"])] + [(u["name"], u["holdout_top1"]) for u in history["uniform"]]  # fmt: skip
    for name, holdout in rows:
        test = (finish.get(name) or {}).get("top1")
        print(f"| {name} | {measured[name]:.3f} | {100 * measured[name] / measured['seed']:.0f}% | {holdout:.2f} | "
              f"{'' if test is None else f'{test:.2f}'} |")  # fmt: skip
    table = history["latency_table"]
    print(f"\nlatency table after calibration: MAPE {table['mape_calibrated']:.1f}% in-sample, "
          f"{table['mape_predicted'] or float('nan'):.1f}% for predictions made before each timing "
          f"(raw sums {table['mape_raw']:.1f}%), {table['points']} whole-network timings")  # fmt: skip
    print(f"cpu: {history['target']['machine']['cpu']}; {json.dumps(history['target']['machine']['versions'])}")
    print(f"wall time of this invocation: {(time.time() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
