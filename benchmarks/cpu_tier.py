"""CPU-tier table: read finished run directories and print one markdown row per run.

    prunekit train configs/cifar10-resnet20-dense.yaml --set train.threads=1 --out /work/bench/dense-resnet20
    python benchmarks/cpu_tier.py /work/bench/dense-resnet20 [/work/bench/reprune-resnet20 ...]

The first run directory is the dense reference for the "vs dense" columns. Per-epoch seconds are the median over
epochs; "data share" is the time spent fetching batches (augmentation included) over the training-loop time.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from prunekit import io


def row(run: Path, dense: dict) -> str:
    summary = io.read_json(run / "summary.json")
    epochs = [r for r in io.read_jsonl(run / "metrics.jsonl") if r.get("kind") == "epoch"]
    decisions = [r for r in io.read_jsonl(run / "metrics.jsonl") if r.get("kind") == "decision"]
    per_epoch = statistics.median(r["epoch_time_s"] for r in epochs)
    data_share = sum(r["data_time_s"] for r in epochs) / sum(r["epoch_time_s"] for r in epochs)
    select_s = [r["select_seconds"] for r in decisions if "select_seconds" in r]
    return (
        f"| {run.name} | {summary['method']} | {100 * summary['test_accuracy']:.2f}% "
        f"| {summary['macs'] / 1e6:.2f}M ({1 - summary['macs'] / dense['macs']:.0%}) "
        f"| {summary['params'] / 1e3:.1f}K ({1 - summary['params'] / dense['params']:.0%}) "
        f"| {summary['train_flops'] / dense['train_flops']:.2f} "
        f"| {summary['train_time_s'] / dense['train_time_s']:.2f} "
        f"| {per_epoch:.1f} | {data_share:.1%} "
        f"| {statistics.median(select_s) if select_s else float('nan'):.2f} |"
    )


def main(paths: list[str]) -> None:
    runs = [Path(p) for p in paths]
    dense = io.read_json(runs[0] / "summary.json")
    print("| run | method | test acc | MACs (reduction) | params (reduction) | train FLOPs vs dense "
          "| train time vs dense | s/epoch (median) | data share | select s/decision |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for run in runs:
        print(row(run, dense))


if __name__ == "__main__":
    main(sys.argv[1:])
