"""CPU-tier tables: read finished run directories and print markdown rows.

    prunekit train configs/cifar10-resnet20-dense.yaml --set train.threads=1 --out /work/bench/dense-resnet20
    python benchmarks/cpu_tier.py /work/bench/dense-resnet20 [/work/bench/reprune-resnet20 ...]

The first run directory is the dense reference for the "vs dense" columns. Per-epoch seconds are the median over
epochs; "data share" is the time spent fetching batches (augmentation included) over the training-loop time.

The second table compares time per epoch under each run's final network (the epochs whose network was within 2% of
the final MACs) with the dense run's median over the same epochs, beside the MACs ratio of that network: the
closer "time ratio" is to "MACs ratio", the better physical compaction turned fewer MACs into less time.

The third table does the same within each run (its full-width epochs against its final-network epochs), which
still holds when the dense reference was timed in another period or on another machine.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from prunekit import io


def records(run: Path, kind: str) -> list[dict]:
    return [r for r in io.read_jsonl(run / "metrics.jsonl") if r.get("kind") == kind]


def row(run: Path, dense: dict) -> str:
    summary = io.read_json(run / "summary.json")
    epochs = records(run, "epoch")
    select_s = [r["select_seconds"] for r in records(run, "decision") if "select_seconds" in r]
    per_epoch = statistics.median(r["epoch_time_s"] for r in epochs)
    data_share = sum(r["data_time_s"] for r in epochs) / sum(r["epoch_time_s"] for r in epochs)
    return (
        f"| {run.name} | {summary['method']} | {100 * summary['test_accuracy']:.2f}% "
        f"| {summary['macs'] / 1e6:.2f}M ({1 - summary['macs'] / dense['macs']:.0%}) "
        f"| {summary['params'] / 1e3:.1f}K ({1 - summary['params'] / dense['params']:.0%}) "
        f"| {summary['train_flops'] / dense['train_flops']:.2f} "
        f"| {summary['train_time_s'] / dense['train_time_s']:.2f} "
        f"| {per_epoch:.1f} | {data_share:.1%} "
        f"| {f'{statistics.median(select_s):.2f}' if select_s else '-'} |"
    )


def final_network_row(run: Path, dense_run: Path) -> str:
    """Median s/epoch of the epochs that trained (within 2% of) the final network, against dense over the same
    epochs (PruneTrain keeps shaving a few channels until its last reconfiguration)."""
    epochs = records(run, "epoch")
    final_macs = epochs[-1]["macs"]
    final = [r for r in epochs if r["macs"] <= 1.02 * final_macs]
    dense_times = {r["epoch"]: r["epoch_time_s"] for r in records(dense_run, "epoch")}
    dense_median = statistics.median(dense_times[r["epoch"]] for r in final)
    median = statistics.median(r["epoch_time_s"] for r in final)
    macs_ratio = final_macs / records(dense_run, "epoch")[-1]["macs"]
    return (f"| {run.name} | {final[0]['epoch'] + 1}-{final[-1]['epoch'] + 1} | {macs_ratio:.2f} | {median:.1f} "
            f"| {dense_median:.1f} | {median / dense_median:.2f} |")


def within_run_row(run: Path) -> str:
    """Median s/epoch of the run's widest epochs (full width, or the initial plan of a method that prunes at the
    start) against its final-network epochs: the same process and
    period, so it holds when the dense reference ran on another machine. "-" when no epoch ran at full width."""
    epochs = records(run, "epoch")
    full_macs = max(r["macs"] for r in epochs)
    final_macs = epochs[-1]["macs"]
    full = [r["epoch_time_s"] for r in epochs if r["macs"] == full_macs and full_macs > 1.02 * final_macs]
    final = [r["epoch_time_s"] for r in epochs if r["macs"] <= 1.02 * final_macs]
    if not full:
        return f"| {run.name} | - | - | - | - | - |"
    ratio = statistics.median(final) / statistics.median(full)
    return (f"| {run.name} | {len(full)} | {statistics.median(full):.1f} | {statistics.median(final):.1f} "
            f"| {final_macs / full_macs:.2f} | {ratio:.2f} |")


def main(paths: list[str]) -> None:
    runs = [Path(p) for p in paths]
    if not runs:
        sys.exit("usage: python benchmarks/cpu_tier.py DENSE_RUN [RUN ...]")
    dense = io.read_json(runs[0] / "summary.json")
    print("| run | method | test acc | MACs (reduction) | params (reduction) | train FLOPs vs dense "
          "| train time vs dense | s/epoch (median) | data share | select s/decision |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for run in runs:
        print(row(run, dense))
    print()
    print("| run | epochs on the final network | MACs ratio | s/epoch (median) | dense s/epoch, same epochs "
          "| time ratio |")
    print("|---|---|---:|---:|---:|---:|")
    for run in runs[1:]:
        print(final_network_row(run, runs[0]))
    print()
    print("| run | epochs at its widest | their s/epoch | final-network s/epoch | MACs, final / widest "
          "| time, final / widest |")
    print("|---|---:|---:|---:|---:|---:|")
    for run in runs[1:]:
        print(within_run_row(run))


if __name__ == "__main__":
    main(sys.argv[1:])
