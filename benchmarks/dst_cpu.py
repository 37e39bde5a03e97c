"""Dynamic sparse training on the CPU, scaled down. Rows: dense, static-ERK, SET-ERK, RigL-uniform, RigL-ERK,
ITOP (RigL growth, ERK) and channel-level DST (ERK), at 90% sparsity, one thread.

Tiers (--tier):
- digits (default): configs/quickstart.yaml (small CNN on 8x8 digits, 30 epochs, 690 steps), method aside.
- resnet20-subset: configs/cifar10-resnet20-dense.yaml on a stratified 5,000-image CIFAR-10 subset for 8 epochs
  (312 steps); about 2.3 min per epoch on one contended thread, so ~2.5 h for the seven rows.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/dst_cpu.py --out /tmp/dst-bench --seeds 0,1,2

Schedules are scaled to the few hundred steps of these runs: dT = 10 (RigL's 100 would give a handful of
updates; its CIFAR-10 run makes 750), ITOP dT = 40 (4x RigL's, as 4000 : 1500-ish in the ITOP README is to RigL's
100 scaled down), T_end = 3/4 of training, channel removal every 3 epochs. Writes
OUT/results.json (one entry per row: accuracy, weight density, R_s, training FLOPs vs dense by RigL's cost model,
measured training time vs dense) and prints the markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from prunekit.config import load_config
from prunekit.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
TIERS = {
    "digits": ("quickstart.yaml", ["train.threads=1", "train.progress=never"]),
    "resnet20-subset": ("cifar10-resnet20-dense.yaml", ["data.train_subset=5000", "data.test_subset=2000",
                                                        "train.epochs=8", "train.threads=1", "train.progress=never"]),
}
DST = "update_every: 10, end_fraction: 0.75"
ROWS = {
    "dense": ["method.name=dense"],
    "static-erk": ["method.name=static", "method.params={sparsity: 0.9, distribution: erk}"],
    "set-erk": ["method.name=set", f"method.params={{sparsity: 0.9, distribution: erk, {DST}}}"],
    "rigl-uniform": ["method.name=rigl", f"method.params={{sparsity: 0.9, distribution: uniform, {DST}}}"],
    "rigl-erk": ["method.name=rigl", f"method.params={{sparsity: 0.9, distribution: erk, {DST}}}"],
    "itop-erk": ["method.name=itop", "method.params={sparsity: 0.9, distribution: erk, update_every: 40}"],
    "channel-dst-erk": ["method.name=channel_dst",
                        f"method.params={{sparsity: 0.9, distribution: erk, {DST}, channel_every: 3, "
                        "channel_rate: 0.15, channel_target: 0.5, channel_end_fraction: 0.75}"],
}


def run_row(name: str, out: Path, tier: str, seed: int) -> dict:
    preset, overrides = TIERS[tier]
    cfg = load_config(ROOT / "configs" / preset, [*overrides, *ROWS[name], f"train.seed={seed}"])
    if cfg.data.path is not None and not Path(cfg.data.path).is_absolute():
        cfg.data.path = str((ROOT / cfg.data.path).resolve())
    trainer = Trainer(cfg, out / f"{name}-s{seed}", quiet=True)
    start = time.perf_counter()
    summary = trainer.fit()
    method = trainer.method
    return {"row": name, "seed": seed, "method": summary["method"], "test_accuracy": summary["test_accuracy"],
            "weight_density": summary.get("weight_density", 1.0),
            "R_s": method.rate() if hasattr(method, "rate") else 1.0,
            "train_flops_vs_dense_rigl_model": (method.train_flops_ratio() if hasattr(method, "train_flops_ratio")
                                                else 1.0),
            "ledger_train_flops": summary["train_flops"], "train_time_s": summary["train_time_s"],
            "final_macs": summary["macs"], "dense_macs": summary["dense_macs"],
            "wall_s": time.perf_counter() - start}


def table(results: dict[str, list[dict]]) -> str:
    """Mean (and sd over seeds) per row; time vs dense is the ratio of the mean training-loop times."""
    dense_time = statistics.mean(r["train_time_s"] for r in results["dense"]) if "dense" in results else None
    lines = ["| row | seeds | accuracy (mean ± sd) | weight density | R_s | train FLOPs vs dense (RigL model) "
             "| final MACs vs dense | train time vs dense |", "|---|---|---|---|---|---|---|---|"]
    for name, runs in results.items():
        acc = [100 * r["test_accuracy"] for r in runs]
        sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
        # a method without a sparse cost model (dense: train_flops_ratio() is None) trains at dense cost: 1.0
        mean = lambda key, runs=runs: statistics.mean(1.0 if r[key] is None else r[key] for r in runs)  # noqa: E731
        time_ratio = f"{mean('train_time_s') / dense_time:.2f}" if dense_time else "-"
        lines.append(f"| {name} | {len(runs)} | {statistics.mean(acc):.2f} ± {sd:.2f}% | {mean('weight_density'):.3f} "
                     f"| {mean('R_s'):.3f} | {mean('train_flops_vs_dense_rigl_model'):.3f} "
                     f"| {mean('final_macs') / mean('dense_macs'):.3f} | {time_ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--tier", choices=sorted(TIERS), default="digits")
    parser.add_argument("--seeds", default="0", help="comma-separated train.seed values")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for seed in (int(s) for s in args.seeds.split(",")):
        for name in args.rows.split(","):
            results[f"{name}-s{seed}"] = run_row(name, args.out, args.tier, seed)
            path.write_text(json.dumps(results, indent=1, sort_keys=True))
            print(json.dumps(results[f"{name}-s{seed}"]), flush=True)
    ordered = {n: [r for r in results.values() if r["row"] == n] for n in ROWS}
    ordered = {n: runs for n, runs in ordered.items() if runs}
    print(table(ordered))


if __name__ == "__main__":
    main()
