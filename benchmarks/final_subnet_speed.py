"""Training-step time of each run's final network against dense, side by side in one process.

The CPU-tier runs were timed in different periods, beside different neighbour jobs, on a VM whose speed drifts
(epochs of the same network ranged 79-100 s within one run). This script removes that noise from the question
"how much faster does the final subnet train": it rebuilds every run's final architecture from its
`pruned.json` (the plan; weights do not change the timing, so fresh ones are used), then times a training step
(forward, cross-entropy, backward, SGD step) at batch 128, channels_last, for every network in turn, round after
round, and reports the median over rounds. "speed-up / MACs" = (dense time / subnet time) / (dense MACs / subnet
MACs): 1.00 means time fell exactly as fast as MACs.

    python benchmarks/final_subnet_speed.py /work/bench/{l1,tp,reprune}-resnet20 [--rounds 15] [--threads 1]

The dense reference is the unpruned supernet of the first run's model; a last row times the dense network with
PruneTrain's group-lasso penalty added to every step (the regularizer's own cost).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from prunekit import io
from prunekit.channels import pruned_architecture
from prunekit.criteria import group_lasso_penalty
from prunekit.measure import count_macs, count_params, measure_train_step

GROUP_LASSO_ROW = "dense + group lasso"


def final_network(run: Path) -> tuple[nn.Module, nn.Module, list[int]]:
    """(dense supernet, final subnet, input shape) of a run: from run/model/pruned.json (a run directory) or
    run/pruned.json (as kept in benchmarks/results/)."""
    directory = run / "model" if (run / "model" / "pruned.json").exists() else run
    supernet, subnet = pruned_architecture(directory)
    return supernet, subnet, [int(v) for v in io.read_json(directory / "pruned.json")["model"]["input_shape"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.manual_seed(0)

    dense, _, shape = final_network(args.runs[0])
    networks = {"dense": dense}
    for run in args.runs:
        supernet, subnet, _ = final_network(run)
        if subnet is not supernet:  # a dense run adds nothing to the "dense" row
            networks[run.name] = subnet
    example = torch.randn(args.batch_size, *shape)
    labels = torch.randint(0, 10, (args.batch_size,))
    macs = {name: count_macs(net, example[:1]) for name, net in networks.items()}
    # PruneTrain trains with its group lasso in every step: the same dense network with that penalty added shows
    # what the regularizer itself costs (its weight does not change the time).
    extra = {GROUP_LASSO_ROW: lambda model: 1e-4 * group_lasso_penalty(model)}
    networks[GROUP_LASSO_ROW], macs[GROUP_LASSO_ROW] = dense, macs["dense"]
    times: dict[str, list[float]] = {name: [] for name in networks}
    start = time.time()
    for round_index in range(args.rounds):
        for name, net in networks.items():
            result = measure_train_step(net, example, labels, warmup=2, repeats=5, threads=args.threads,
                                        channels_last=True, extra_loss=extra.get(name))
            times[name].append(result.median_ms)
        print(f"round {round_index + 1}/{args.rounds} done ({time.time() - start:.0f} s)", flush=True)

    print(f"\n{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), "
          f"batch {args.batch_size}, channels_last, median of {args.rounds} rounds x 5 steps\n")
    print("| network | params | MACs ratio | train step ms (median) | p10-p90 over rounds | time ratio "
          "| speed-up / MACs |")
    print("|---|---:|---:|---:|---|---:|---:|")
    dense_ms = statistics.median(times["dense"])
    for name, net in networks.items():
        ms = statistics.median(times[name])
        spread = sorted(times[name])
        low, high = spread[len(spread) // 10], spread[-1 - len(spread) // 10]
        macs_ratio = macs[name] / macs["dense"]
        ideal = (dense_ms / ms) / (1 / macs_ratio)
        print(f"| {name} | {count_params(net) / 1e3:.1f}K | {macs_ratio:.2f} | {ms:.1f} | {low:.1f}-{high:.1f} "
              f"| {ms / dense_ms:.2f} | {ideal:.2f} |")


if __name__ == "__main__":
    main()
