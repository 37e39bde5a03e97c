"""Time per epoch with 1 and 2 training processes (torchrun, gloo on CPU), before and after the subnet shrinks.

One run of ResNet-20 on synthetic 32x32 data (shapes are what matter for time) trains densely for one epoch, then
a one-shot uniform L1-norm cut (every group, policy all) to 50% of the MACs; epochs 2.. train the physically smaller
subnet. The same config runs
with 1 process (train.threads = 1) and with 2 processes of one thread each, one after the other, `--repeats`
times alternating; the table gives the median epoch time (from metrics.jsonl) of the dense epoch and of the
pruned epochs, and the 2-process speed-up. The global batch is the same in both.

    python benchmarks/ddp_epoch_time.py [--repeats 2] [--epochs 3] [--size 2048] [--out /tmp/ddp-bench]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from prunekit import io

SETS = ["data.name=synthetic", "data.synthetic_shape=[3,32,32]", "model.name=resnet20", "train.batch_size=128",
        "train.threads=1", "optim.lr=0.05", "method.name=l1_filter", "method.params.prune_epoch=1",
        "method.params.target_macs_ratio=0.5", "method.params.policy=all"]


def run(out: Path, nproc: int, epochs: int, size: int) -> list[float]:
    shutil.rmtree(out, ignore_errors=True)
    config = out.parent / "ddp-bench.yaml"
    config.write_text("name: ddp-bench\n")
    sets = SETS + [f"train.epochs={epochs}", f"data.synthetic_size={size}"]
    command = [sys.executable, "-m", "prunekit", "train", str(config), "--out", str(out), "--quiet",
               "--nproc", str(nproc), *[a for s in sets for a in ("--set", s)]]
    subprocess.run(command, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True)
    epochs = [r for r in io.read_jsonl(out / "metrics.jsonl") if r["kind"] == "epoch"]
    print(f"{nproc} process(es): MACs per epoch {[r['macs'] for r in epochs]}", flush=True)
    return [r["epoch_time_s"] for r in epochs]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--out", default="/tmp/ddp-bench")
    args = parser.parse_args()
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    times: dict[int, dict[str, list[float]]] = {1: {"dense": [], "pruned": []}, 2: {"dense": [], "pruned": []}}
    for _ in range(args.repeats):
        for nproc in (1, 2):
            epochs = run(root / f"p{nproc}", nproc, args.epochs, args.size)
            times[nproc]["dense"].append(epochs[0])
            times[nproc]["pruned"].extend(epochs[1:])
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; ResNet-20, "
          f"{args.size} samples/epoch, global batch 128, {args.repeats} repeats")
    print("| epochs | 1 process: median s (range) | 2 processes: median s (range) | speed-up |")
    print("|---|---:|---:|---:|")
    for phase in ("dense", "pruned"):
        cells = [f"{statistics.median(t):.2f} ({min(t):.2f}-{max(t):.2f})" for t in (times[1][phase],
                                                                                     times[2][phase])]
        ratio = statistics.median(times[1][phase]) / statistics.median(times[2][phase])
        print(f"| {phase} | {cells[0]} | {cells[1]} | {ratio:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
