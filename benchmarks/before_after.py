"""Classification speed of two source trees, interleaved: training images/s through ``train()`` and eager latency.

Checks that a refactor made nothing slower. Each round runs every tree in a fresh process, in
turn, so that noise from other jobs falls on both alike; the table gives each figure's median.

    git worktree add /tmp/before b7af9d7          # the tree before the change
    PYTHONPATH=src python benchmarks/before_after.py --tree before=/tmp/before/src --tree after=src
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

SNIPPET = r"""
import json, sys, time, tempfile, torch
import mobilenets
from mobilenets.training import TrainConfig, train
torch.set_num_threads(int(sys.argv[1]))
out = tempfile.mkdtemp() + "/run"
train(TrainConfig(model="mobilenet_v1_025", output=out, stem_stride=1, epochs=1, batch_size=128, train_limit=12800,
                  val_limit=1000, channels_last=True, threads=int(sys.argv[1]), progress=False, tensorboard=False))
row = open(out + "/metrics.csv").read().splitlines()
keys, values = row[0].split(","), row[-1].split(",")
train_ips = float(values[keys.index("images_per_s")])
model = mobilenets.create_model("mobilenet_v3_small_100").eval()
x = torch.randn(1, 3, 224, 224)
with torch.no_grad():
    for _ in range(10):
        model(x)
    times = []
    for _ in range(60):
        t = time.perf_counter(); model(x); times.append(time.perf_counter() - t)
times.sort()
print(json.dumps({"train_images_per_s": train_ips, "eager_v3s_224_ms": 1000 * times[len(times) // 2]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True, metavar="NAME=SRC", help="a source tree (twice)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    trees = dict(t.split("=", 1) for t in args.tree)
    results: dict[str, list[dict]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "snippet.py")
        with open(script, "w") as f:
            f.write(SNIPPET)
        for r in range(args.rounds):
            for name, src in trees.items():
                env = {**os.environ, "PYTHONPATH": os.path.abspath(src)}
                done = subprocess.run([sys.executable, script, str(args.threads)], env=env, capture_output=True,
                                      text=True, check=True)  # fmt: skip
                results[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(f"round {r + 1} {name}: {results[name][-1]}", file=sys.stderr, flush=True)
    from mobilenets.deploy.peak import cpu_features

    print(f"CPU: {cpu_features().summary()}; {args.threads} threads; medians of {args.rounds} interleaved rounds")
    print("| tree | train images/s (V1 0.25, stem 1, 28x28, b128) | eager V3-Small 224 batch 1 (ms) |")
    print("|---|---:|---:|")
    for name, rows in results.items():
        train_ips = statistics.median(r["train_images_per_s"] for r in rows)
        latency = statistics.median(r["eager_v3s_224_ms"] for r in rows)
        print(f"| {name} | {train_ips:.0f} | {latency:.2f} |")


if __name__ == "__main__":
    main()
