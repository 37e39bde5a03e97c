"""Structured (channel) vs unstructured (weight) lottery tickets on the LeNet tier: IMP with reset on
LeNet-300-100 / Fashion-MNIST, test accuracy and measured training time per level.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lottery_structured.py --out runs/bench/lottery-structured

Both arms use `configs/lottery/fmnist-lenet300.yaml` (3 epochs per level, one seed) without controls. Weights:
20% of the remaining weights per level by global magnitude (output layer at 10%). Channels: 20% of the remaining
hidden units per level, per group (scope layer: raw L1 filter norms are not comparable across layers of
different fan-in), the ticket trained as a physically smaller MLP. The training time is the Trainer's measured
`train_time_s` (one thread), which on a loaded machine is mostly noise; so each level's ticket is also timed in
isolation: the level's real training state (Trainer set-up on the level's start point: the small subnet, or the
full net with its masks) runs 20 SGD steps on the first 20 training batches, 7 times, and the fastest repeat is
reported (the minimum is the least load-disturbed figure). Re-running resumes. Prints the markdown table for
benchmarks/RESULTS.md (also saved as benchmarks/results/lottery_structured.md / .json).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from prunekit import io
from prunekit.lottery import LotteryDriver, level_name, load_lottery_config
from prunekit.train.trainer import StartPoint, Trainer

PRESET = Path(__file__).resolve().parents[1] / "configs" / "lottery" / "fmnist-lenet300.yaml"
ARMS = {"weights": ["lottery.unit=weights"],
        "channels": ["lottery.unit=channels", "lottery.layer_rates={}", "lottery.scope=layer"]}


def step_time(driver: LotteryDriver, level: int, scratch: Path, steps: int = 20, repeats: int = 7) -> float:
    """Fastest of `repeats` timings of `steps` training steps (forward, backward, masked SGD step) of the level's
    ticket, on the state the Trainer builds from the level's start point (nothing is written: set-up only)."""
    start = level_start(driver, level)
    trainer = Trainer(driver.level_cfg(level), scratch / f"{level_name(level)}-timing", quiet=True, start=start)
    trainer.setup()
    trainer._apply_start()  # the level's starting state (private: the benchmark needs the state without a run)
    state = trainer.state
    batches = []
    for batch in trainer.train_loader.iterate(0):
        batches.append(batch)
        if len(batches) == steps:
            break
    best = float("inf")
    for _ in range(repeats):
        begin = time.perf_counter()
        for images, labels in batches:
            state.zero_grad()
            F.cross_entropy(state.model(images), labels).backward()
            state.step()
        best = min(best, time.perf_counter() - begin)
    return best / steps


def level_start(driver: LotteryDriver, level: int) -> StartPoint:
    """The start point level `level` trains from (level 0: theta_0, step 0)."""
    if level == 0:
        return StartPoint(weights=driver.initial_weights(), step=0)
    return driver.pruner.prepare_start(driver.start_point(level, driver.mask(level)), driver.probe())


def table(results: dict[str, dict]) -> str:
    w, c = ({r["level"]: r for r in results[arm]["levels"]} for arm in ("weights", "channels"))
    dense_params, dense_macs = w[0]["params"], w[0]["macs"]
    lines = ["| level | unstructured: weights | acc | train s | ms/step | structured: params | MACs | acc | train s "
             "| ms/step |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for level in sorted(set(w) & set(c)):
        a, b = w[level], c[level]
        lines.append(f"| {level} | {100 * a['weight_density']:.1f}% | {100 * a['test_accuracy']:.2f}% | "
                     f"{a['train_time_s']:.1f} | {1000 * a['step_s']:.2f} | {100 * b['params'] / dense_params:.1f}% | "
                     f"{100 * b['macs'] / dense_macs:.1f}% | {100 * b['test_accuracy']:.2f}% | "
                     f"{b['train_time_s']:.1f} | {1000 * b['step_s']:.2f} |")
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
        driver = LotteryDriver(cfg, lottery, Path(args.out) / arm)
        results[arm] = driver.run()
        for row in results[arm]["levels"]:
            row["step_s"] = step_time(driver, row["level"], Path(args.out) / "scratch")
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
