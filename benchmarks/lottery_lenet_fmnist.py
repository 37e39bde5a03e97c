"""CPU benchmark of the lottery-ticket finding (Frankle & Carbin 2019, Fig. 3; the issue's LeNet tier): IMP with
reset on LeNet-300-100 / Fashion-MNIST, test accuracy vs weights remaining for the ticket and its reinit and
random_prune controls.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lottery_lenet_fmnist.py --out runs/bench/lottery-lenet-fmnist

Scaled down from the paper (and OpenLTH's mnist_lenet_300_100: 40 epochs per level): 3 epochs per level, one
seed. Re-running resumes (every level is an ordinary run directory). Writes RUN/lottery.json and prints the
markdown table for benchmarks/RESULTS.md (also saved as benchmarks/results/lottery_lenet_fmnist.md).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from prunekit import io
from prunekit.lottery import LotteryDriver, load_lottery_config

PRESET = Path(__file__).resolve().parents[1] / "configs" / "lottery" / "fmnist-lenet300.yaml"


def table(summary: dict) -> str:
    by_level: dict[int, dict[str, dict]] = {}
    for row in summary["levels"]:
        by_level.setdefault(row["level"], {})[row["kind"]] = row
    lines = ["| level | weights remaining | ticket (reset) | reinit | random_prune |", "|---:|---:|---:|---:|---:|"]
    for level, rows in sorted(by_level.items()):
        cells = [f"{100 * rows[k]['test_accuracy']:.2f}%" if k in rows else "-"
                 for k in ("ticket", "reinit", "random_prune")]
        lines.append(f"| {level} | {100 * rows['ticket']['weight_density']:.1f}% | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench/lottery-lenet-fmnist")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg, lottery = load_lottery_config(PRESET, args.set)
    start = time.perf_counter()
    summary = LotteryDriver(cfg, lottery, args.out).run()
    wall = time.perf_counter() - start
    text = (f"{table(summary)}\n\nLeNet-300-100, Fashion-MNIST, IMP reset, {cfg.train.epochs} epochs per level, "
            f"SGD lr {cfg.optim.lr} batch {cfg.train.batch_size}, seed {cfg.train.seed}; "
            f"{platform.processor() or platform.machine()}, "
            f"one thread, {time.strftime('%Y-%m-%d')}; this invocation {wall:.0f} s wall.\n")
    print(text)
    io.write_text(Path(__file__).parent / "results" / "lottery_lenet_fmnist.md", text)
    io.write_json(Path(__file__).parent / "results" / "lottery_lenet_fmnist.json", summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
