"""Does physical channel compaction turn MACs savings into CPU time savings?

ResNet-56 and VGG-16 (CIFAR, 32x32) with uniform plans (every group of the "all" policy keeps the same fraction of
its channels, the lowest indices) tuned by bisection to remove about 30%, 50% and 70% of the MACs, each with and
without kept counts rounded to multiples of 8 (the bisection runs on the rounded plan, so both meet the same
MACs budget). For each: MACs ratio (pruned/dense, per sample, `prunekit.measure.count_macs`), median CPU
inference latency at batch 1 and 64, median training-step time at batch 128 (forward, cross-entropy, backward,
SGD step), channels_last, 2 threads. "speed-up / MACs reduction" = (dense time / pruned time) / (dense MACs /
pruned MACs): 1.0 means time falls exactly as fast as MACs.

    .venv/bin/python benchmarks/compaction_speed.py [--models resnet56 vgg16] [--repeats 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from prunekit.channels import ChannelPlan, channel_groups, materialize
from prunekit.measure import count_macs, measure_latency, measure_train_step
from prunekit.models import create_model

TARGETS = (0.3, 0.5, 0.7)  # fraction of MACs removed


def uniform_plan(groups, fraction: float, round_to: int) -> ChannelPlan:
    """Every group keeps the same fraction of its channels (lowest indices), rounded DOWN to a multiple of
    `round_to` (at least `round_to`, or the whole group when it is smaller)."""
    keep = {}
    for g in groups:
        count = max(1, round(fraction * g.size))
        if round_to > 1:
            count = min(g.size, max(round_to, count // round_to * round_to))
        keep[g.name] = list(range(count))
    return ChannelPlan(keep)


def plan_for_target(model, groups, example, dense_macs: int, removed: float, round_to: int) -> ChannelPlan:
    """Bisect the kept fraction of the (rounded) uniform plan towards (1 - removed) x dense MACs and return the
    bracketing plan closest to it, so plans with and without rounding meet about the same MACs budget (rounded
    plans move in coarse steps on narrow layers; the table reports the ratio actually reached)."""
    low, high = 0.0, 1.0
    for _ in range(14):
        middle = (low + high) / 2
        macs = count_macs(materialize(model, uniform_plan(groups, middle, round_to), groups), example)
        if macs / dense_macs > 1.0 - removed:
            high = middle
        else:
            low = middle
    target = (1.0 - removed) * dense_macs
    candidates = [uniform_plan(groups, f, round_to) for f in (low, high)]
    return min(candidates, key=lambda p: abs(count_macs(materialize(model, p, groups), example) - target))


def timings(model, threads: int, repeats: int) -> dict[str, float]:
    one, batch64, batch128 = torch.randn(1, 3, 32, 32), torch.randn(64, 3, 32, 32), torch.randn(128, 3, 32, 32)
    labels = torch.randint(0, 10, (128,))
    return {
        "bs1": measure_latency(model, one, warmup=5, repeats=3 * repeats, threads=threads,
                               channels_last=True).median_ms,
        "bs64": measure_latency(model, batch64, warmup=2, repeats=repeats, threads=threads,
                                channels_last=True).median_ms,
        "train128": measure_train_step(model, batch128, labels, warmup=2, repeats=max(3, repeats // 2),
                                       threads=threads, channels_last=True).median_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet56", "vgg16"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    example = torch.randn(1, 3, 32, 32)
    print(f"# compaction speed ({platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} threads, channels_last, {time.strftime('%Y-%m-%d')})\n")
    print("| model | MACs removed (target) | round_to | MACs ratio | bs1 ms | bs64 ms | train bs128 ms "
          "| speed-up/MACs-red. bs1 | bs64 | train |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        model = create_model(name).eval()
        groups = channel_groups(model, example, "all")
        dense_macs = count_macs(model, example)
        timings(model, args.threads, 2)  # throwaway: the first calls pay one-off oneDNN kernel set-up
        dense = timings(model, args.threads, args.repeats)
        print(f"| {name} | dense | - | 1.000 | {dense['bs1']:.2f} | {dense['bs64']:.1f} | {dense['train128']:.0f} "
              "| - | - | - |", flush=True)
        for removed in TARGETS:
            for round_to in (1, 8):
                plan = plan_for_target(model, groups, example, dense_macs, removed, round_to)
                subnet = materialize(model, plan, groups)
                ratio = count_macs(subnet, example) / dense_macs
                measured = timings(subnet, args.threads, args.repeats)
                efficiency = {k: (dense[k] / measured[k]) * ratio for k in measured}
                print(f"| {name} | {removed:.0%} | {round_to} | {ratio:.3f} | {measured['bs1']:.2f} | "
                      f"{measured['bs64']:.1f} | {measured['train128']:.0f} | {efficiency['bs1']:.2f} | "
                      f"{efficiency['bs64']:.2f} | {efficiency['train128']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
