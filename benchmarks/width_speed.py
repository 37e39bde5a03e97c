"""Do hardware-aware widths turn MACs savings into time savings? (issue 15 item 2)

For each model (CIFAR input, 32x32) and channel policy: a uniform plan (every group keeps the same fraction of its
channels, lowest indices) at the smallest rate whose plan keeps at most half the dense MACs, with kept counts
  - as they fall (round_to 1),
  - rounded up to multiples of 8 (round_to 8; the search prices the rounded counts, so it still meets the budget),
  - on this machine's fast-width grids (round_to hardware: the round_to 1 plan rounded by `PlanRounding`, i.e.
    timed per group once, cached, nearest fast width, then step-downs within the round_to 1 plan's MACs).
Then, side by side in one process and interleaved (each round times every variant, in a rotating order), a
training step (forward, cross-entropy, backward, SGD step) and inference (eval, no_grad) at batch 64,
channels_last, one thread. Figures: median ms over rounds, the spread (min-max over rounds), and
speed-up / MACs-reduction = (dense time / variant time) / (dense MACs / variant MACs), computed within each round
and reported as median [min, max]; 1.0 means time falls exactly as fast as MACs.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/width_speed.py [--models resnet56:internal resnet56:all vgg16:all]
        [--rounds 9] [--steps 2] [--batch 64] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from types import SimpleNamespace

import torch
from torch import nn

from prunekit.channels import ChannelPlan, channel_groups, materialize
from prunekit.criteria import keep_count
from prunekit.measure import count_macs
from prunekit.measure.width_timing import WidthTimer, device_name
from prunekit.methods.budget import MacsBudget, PlanMacs, plan_from_counts, rate_steps
from prunekit.methods.widths import PlanRounding
from prunekit.models import create_model

TARGET = 0.5  # MACs kept


def uniform_plan(groups, macs: PlanMacs, round_to: int) -> ChannelPlan:
    """The smallest uniform rate whose counts, rounded up to multiples of round_to, keep <= TARGET of the MACs."""
    rounding = PlanRounding(round_to)

    def counts_at(rate: float) -> list[int]:
        return rounding.search_counts(groups, [max(1, keep_count(g.size, rate)) for g in groups])

    choice = MacsBudget(TARGET, macs.dense()).search(rate_steps([g.size for g in groups]),
                                                     lambda rate: macs(counts_at(rate)))
    return plan_from_counts(groups, counts_at(choice.value))


def variants(model: nn.Module, policy: str, batch: int) -> tuple[dict[str, ChannelPlan | None], dict]:
    x = torch.zeros(2, 3, 32, 32).to(memory_format=torch.channels_last)
    groups = channel_groups(model, x, policy=policy)
    macs = PlanMacs(model, groups, x)
    plain = uniform_plan(groups, macs, 1)
    hardware = PlanRounding("hardware", timer=WidthTimer(batch, channels_last=True))
    start = time.perf_counter()
    hardware.prepare(SimpleNamespace(supernet=model, example_inputs=x, device=torch.device("cpu")), groups, macs)
    timing_seconds = time.perf_counter() - start
    hw_plan, info = hardware.apply(plain, groups)
    plans = {"dense": None, "round_to 1": plain, "round_to 8": uniform_plan(groups, macs, 8), "hardware": hw_plan}
    extra = {"width_timing_seconds": round(timing_seconds, 1), "measured_ops": len(hardware.timer.measured),
             "within_budget": info["widths_within_budget"],
             "counts": {name: None if plan is None else [len(plan.kept(g)) for g in groups]
                        for name, plan in plans.items()},
             "grids": hardware.grids()}
    built = {name: (materialize(model, plan, groups) if plan is not None else model) for name, plan in plans.items()}
    return built, extra


def stepper(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, train: bool):
    model = model.to(memory_format=torch.channels_last)
    if not train:
        model.eval()

        def infer() -> None:
            with torch.no_grad():
                model(images)
        return infer
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_function = nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_function(model(images), labels).backward()
        optimizer.step()
    return step


def interleaved(calls: dict[str, object], rounds: int, steps: int) -> dict[str, list[float]]:
    """ms per call of each variant in every round; the order rotates round by round."""
    names = list(calls)
    for name in names:  # warm-up
        calls[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            for _ in range(steps):
                calls[name]()
            times[name].append(1e3 * (time.perf_counter() - start) / steps)
    return times


def run(model_name: str, policy: str, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=10).to(memory_format=torch.channels_last)
    models, extra = variants(model, policy, args.batch)
    one = torch.zeros(1, 3, 32, 32).to(memory_format=torch.channels_last)
    macs = {name: count_macs(m, one) for name, m in models.items()}
    images = torch.randn(args.batch, 3, 32, 32).to(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (args.batch,))
    rows = {name: {"macs_ratio": macs[name] / macs["dense"]} for name in models}
    for mode, train in (("train", True), ("infer", False)):
        calls = {name: stepper(copy.deepcopy(m), images, labels, train) for name, m in models.items()}
        times = interleaved(calls, args.rounds, args.steps)
        for name in models:
            per_round = [(d / t) / (macs["dense"] / macs[name])
                         for d, t in zip(times["dense"], times[name], strict=True)]
            rows[name][mode] = {"median_ms": statistics.median(times[name]), "min_ms": min(times[name]),
                                "max_ms": max(times[name]), "ratio": statistics.median(per_round),
                                "ratio_min": min(per_round), "ratio_max": max(per_round)}
    return {"model": model_name, "policy": policy, "rows": rows, **extra}


def table(results: list[dict]) -> str:
    lines = ["| model | policy | widths | MACs ratio | train ms (min-max) | infer ms (min-max) | "
             "train speed-up/MACs-red. [min, max] | infer speed-up/MACs-red. [min, max] |", "|---" * 8 + "|"]
    for res in results:
        for name, row in res["rows"].items():
            cells = [res["model"], res["policy"], name, f"{row['macs_ratio']:.3f}"]
            for mode in ("train", "infer"):
                m = row[mode]
                cells.append(f"{m['median_ms']:.1f} ({m['min_ms']:.1f}-{m['max_ms']:.1f})")
            for mode in ("train", "infer"):
                m = row[mode]
                ratio = f"{m['ratio']:.2f} [{m['ratio_min']:.2f}, {m['ratio_max']:.2f}]"
                cells.append("-" if name == "dense" else ratio)
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet56:internal", "resnet56:all", "vgg16:all"])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {device_name(torch.device('cpu'))}, "
          f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch {args.batch}")
    results = []
    for spec in args.models:
        model_name, _, policy = spec.partition(":")
        res = run(model_name, policy or "all", args)
        results.append(res)
        print(f"{spec}: width timing {res['width_timing_seconds']} s ({res['measured_ops']} layers timed), "
              f"hardware within budget: {res['within_budget']}", flush=True)
        for name, counts in res["counts"].items():
            print(f"  {name}: {counts}")
        print(table([res]), flush=True)  # each model as it finishes (a long run may be cut short)
        if args.json:
            with open(args.json, "w") as handle:
                json.dump(results, handle, indent=1)
    print(table(results))


if __name__ == "__main__":
    main()
