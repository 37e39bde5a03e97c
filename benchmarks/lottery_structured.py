"""Structured (channel) vs unstructured (weight) lottery tickets on the LeNet tier: IMP with reset on
LeNet-300-100 / Fashion-MNIST, test accuracy and measured training time per level.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lottery_structured.py --out runs/bench/lottery-structured

Both arms use `configs/lottery/fmnist-lenet300.yaml` (3 epochs per level, one seed) without controls. Weights:
20% of the remaining weights per level by global magnitude (output layer at 10%). Channels: 20% of the remaining
hidden units per level, per group (scope layer: raw L1 filter norms are not comparable across layers of
different fan-in), the ticket trained as a physically smaller MLP. The training time is the Trainer's measured
`train_time_s` (one thread). Re-running resumes. Prints the markdown table for benchmarks/RESULTS.md (also saved
as benchmarks/results/lottery_structured.md / .json).
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
ARMS = {"weights": ["lottery.unit=weights"],
        "channels": ["lottery.unit=channels", "lottery.layer_rates={}", "lottery.scope=layer"]}


def table(results: dict[str, dict]) -> str:
    w, c = ({r["level"]: r for r in results[arm]["levels"]} for arm in ("weights", "channels"))
    dense_params, dense_macs = w[0]["params"], w[0]["macs"]
    lines = ["| level | unstructured: weights | acc | train s | structured: params | MACs | acc | train s |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for level in sorted(set(w) & set(c)):
        a, b = w[level], c[level]
        lines.append(f"| {level} | {100 * a['weight_density']:.1f}% | {100 * a['test_accuracy']:.2f}% | "
                     f"{a['train_time_s']:.1f} | {100 * b['params'] / dense_params:.1f}% | "
                     f"{100 * b['macs'] / dense_macs:.1f}% | {100 * b['test_accuracy']:.2f}% | "
                     f"{b['train_time_s']:.1f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench/lottery-structured")
    parser.add_argument("--levels", type=int, default=5)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    results = {}
    for arm, sets in ARMS.items():
        overrides = ["lottery.controls=[]", f"lottery.levels={args.levels}", *sets, *args.set]
        cfg, lottery = load_lottery_config(PRESET, overrides)
        results[arm] = LotteryDriver(cfg, lottery, Path(args.out) / arm).run()
    wall = time.perf_counter() - start
    text = (f"{table(results)}\n\nLeNet-300-100, Fashion-MNIST, IMP reset, {cfg.train.epochs} epochs per level, "
            f"SGD lr {cfg.optim.lr} batch {cfg.train.batch_size}, seed {cfg.train.seed}; "
            f"{platform.processor() or platform.machine()}, one thread, {time.strftime('%Y-%m-%d')}; "
            f"this invocation {wall:.0f} s wall.\n")
    print(text)
    io.write_text(Path(__file__).parent / "results" / "lottery_structured.md", text)
    io.write_json(Path(__file__).parent / "results" / "lottery_structured.json", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
