"""Supermasks on LeNet-300-100 / Fashion-MNIST (Zhou et al. 2019): masks chosen by each criterion from the dense
run of the lottery benchmark (its level_00: theta_0 and theta_T), applied to the *untrained* initial weights
(as they are, and re-initialised as signed_constant), evaluated without training; then the learned supermask
(weights frozen at init, scores trained) for a few epochs.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lottery_supermask.py --lottery runs/bench/lottery-lenet-fmnist

Scaled down: one-shot layer-wise masks keeping 20% of the hidden layers' weights and 50% of the output layer's
(Zhou et al. use the IMP masks of each level); the learned supermask trains 3 epochs (they train 2000 on MNIST).
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch

from prunekit import io
from prunekit.cli.lmc import _driver_of
from prunekit.config import RunConfig, build_dataclass
from prunekit.train import checkpoint as ckpt
from prunekit.train.loop import evaluate
from prunekit.train.trainer import Trainer
from prunekit.weights.magnitude import prunable_weights
from prunekit.weights.supermask import mask_by_criterion, masked_init

CRITERIA = ["large_final", "large_final_same_sign", "small_final", "large_init", "large_init_large_final",
            "magnitude_increase", "movement", "random"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lottery", default="runs/bench/lottery-lenet-fmnist")
    parser.add_argument("--learned-epochs", type=int, default=3)
    parser.add_argument("--score-lr", type=float, default=100.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = Path(args.lottery)
    driver = _driver_of(root, quiet=True)
    probe = driver.probe()
    init = driver.initial_weights()
    final = ckpt.load_checkpoint(root / "level_00" / "checkpoints").model
    names = list(prunable_weights(probe.state.supernet))
    model = copy.deepcopy(probe.state.supernet)
    lines = ["| mask criterion | kept weights | masked init | masked signed_constant |", "|---|---:|---:|---:|"]
    for criterion in CRITERIA:
        masks = mask_by_criterion(criterion, {n: init[n] for n in names}, {n: final[n] for n in names}, None,
                                  rate=0.8, layer_rates={"fc.weight": 0.5}, seed=0)
        density = sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
        accs = []
        for reinit in (None, "signed_constant"):
            model.load_state_dict(masked_init(init, masks, reinit))
            accs.append(evaluate(model, probe.test_loader)[1])
        lines.append(f"| {criterion} | {100 * density:.1f}% | {100 * accs[0]:.2f}% | {100 * accs[1]:.2f}% |")
    model.load_state_dict(final)
    dense = evaluate(model, probe.test_loader)[1]
    text = "\n".join(lines) + f"\n\nDense trained network (level_00): {100 * dense:.2f}%; chance 10%.\n"
    # the learned supermask: weights frozen at theta_0 (optim.lr 0), scores trained
    settings = io.read_json(root / "settings.json")["run"]
    settings["method"] = {"name": "supermask", "params": {"score_lr": args.score_lr}}
    settings["optim"]["lr"] = 0.0
    settings["train"]["epochs"] = args.learned_epochs
    settings["name"] = "supermask-learned"
    cfg = build_dataclass(RunConfig, settings)
    out = root.parent / (root.name + "-learned-supermask")
    start = time.perf_counter()
    if (out / "summary.json").exists():
        summary = io.read_json(out / "summary.json")
    elif (out / "checkpoints" / "latest.json").exists():
        summary = Trainer.resume(out, quiet=True).fit()
    else:
        summary = Trainer(cfg, out, quiet=True).fit()
    text += (f"\nLearned supermask ({args.learned_epochs} epochs, score SGD lr {args.score_lr}, weights frozen at "
             f"theta_0): test {100 * summary['test_accuracy']:.2f}% at {100 * summary['weight_density']:.1f}% of "
             f"the weights ({time.perf_counter() - start:.0f} s).\n")
    print(text)
    io.write_text(Path(__file__).parent / "results" / "lottery_supermask.md", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
